// Grants Microsoft Graph's application role DeviceManagementServiceConfig.ReadWrite.All to a service principal
// (the Function App's managed identity), through the Microsoft Graph Bicep extension. The role id is looked up by
// its value in Graph's own appRoles, never hard-coded. Deploying this needs directory rights to assign application
// permissions (for example Privileged Role Administrator).

extension microsoftGraphV1

@description('Object (principal) id of the managed identity.')
param principalId string

@description('The Graph application permission the app needs (least privileged for the sync action).')
param appRole string = 'DeviceManagementServiceConfig.ReadWrite.All'

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

resource grant 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: graph.id
  appRoleId: filter(graph.appRoles, role => role.value == appRole)[0].id
}

output appRoleId string = grant.appRoleId
