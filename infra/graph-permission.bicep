// Grants Microsoft Graph's application roles (one assignment per role) to a service principal: the Function App's
// managed identity. Through the Microsoft Graph Bicep extension; each role id is looked up by its value in Graph's
// own appRoles, never hard-coded. Deploying this needs directory rights to assign application permissions (for
// example Privileged Role Administrator).

extension microsoftGraphV1

@description('Object (principal) id of the managed identity.')
param principalId string

@description('The Graph application permissions the enabled sync targets need, each once.')
param appRoles array = [
  'DeviceManagementServiceConfig.ReadWrite.All'
]

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

resource grants 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for appRole in appRoles: {
  principalId: principalId
  resourceId: graph.id
  appRoleId: filter(graph.appRoles, role => role.value == appRole)[0].id
}]

output appRoleIds array = [for (appRole, i) in appRoles: grants[i].appRoleId]
