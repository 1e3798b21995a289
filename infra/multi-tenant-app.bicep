// Many tenants from one deployment (README, 'Many tenants'): a multi-tenant app registration whose federated
// identity credential trusts the Function App's user-assigned managed identity, so the app acts in every customer
// tenant that consented, with no secret anywhere. Through the Microsoft Graph Bicep extension; each permission's id
// is looked up by its value in Graph's own appRoles. Deploying this needs Application.ReadWrite.All (for example
// Application Administrator) in the home tenant.

extension microsoftGraphV1

@description('Unique name of the app registration (the Graph extension\'s idempotent key).')
param uniqueName string

@description('Display name customers see on the consent page.')
param displayName string

@description('Object (principal) id of the user-assigned managed identity: the federated credential\'s subject.')
param identityPrincipalId string

@description('The Entra authority of this cloud, without a trailing slash, such as https://login.microsoftonline.com.')
param authority string

@description('The Graph application permissions the enabled sync targets need, each once.')
param appRoles array

var graphAppId = '00000003-0000-0000-c000-000000000000'
// The token-exchange audience of this cloud (shared/federation.py derives the same from AZURE_AUTHORITY_HOST).
var exchangeAudience = contains(authority, 'microsoftonline.us') ? 'api://AzureADTokenExchangeUSGov' : (contains(authority, '.cn') ? 'api://AzureADTokenExchangeChina' : 'api://AzureADTokenExchange')

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

resource multiTenantApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMultipleOrgs'
  requiredResourceAccess: [
    {
      resourceAppId: graphAppId
      resourceAccess: [for appRole in appRoles: {
        id: filter(graph.appRoles, role => role.value == appRole)[0].id
        type: 'Role'
      }]
    }
  ]

  // The managed identity's token (issued by the home tenant, subject its principal id) is the app's credential.
  resource managedIdentityCredential 'federatedIdentityCredentials@v1.0' = {
    name: '${multiTenantApp.uniqueName}/function-app-identity'
    description: 'The Intune sync Function App\'s user-assigned managed identity'
    audiences: [
      exchangeAudience
    ]
    issuer: '${authority}/${tenant().tenantId}/v2.0'
    subject: identityPrincipalId
  }
}

@description('TENANT_APP_CLIENT_ID: the multi-tenant app\'s client id.')
output appId string = multiTenantApp.appId
output exchangeAudience string = exchangeAudience
