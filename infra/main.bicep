// Intune Exchange connector sync: a Linux Function App on the Flex Consumption plan (Python 3.13) with a managed
// identity, identity-based host storage (no account keys), Application Insights on Log Analytics, and the Microsoft
// Graph app role DeviceManagementServiceConfig.ReadWrite.All granted to that identity.
//
//   az deployment group create -g <resource-group> -f infra/main.bicep -p infra/main.parameters.json -p name=<name>
//   azd up

targetScope = 'resourceGroup'

@description('Short name for the app; resource names derive from it.')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Use a user-assigned managed identity (wired to AZURE_CLIENT_ID) instead of the system-assigned one. Always on with tenantIds.')
param useUserAssignedIdentity bool = false

@description('Many tenants (README, \'Many tenants\'): the customer tenant ids (GUIDs) to act in. Non-empty creates a multi-tenant app registration whose federated identity credential trusts the user-assigned identity, and sets TENANT_IDS; each tenant\'s administrator then consents once (output consentUrls).')
param tenantIds array = []

@description('With tenantIds: how many tenants run at once (TENANT_CONCURRENCY).')
@minValue(1)
@maxValue(64)
param tenantConcurrency int = 8

@description('Grant the Graph app role in this deployment. Needs a deployer who may assign application permissions (Privileged Role Administrator); without that, set false and run `python -m shared grant` later.')
param grantGraphPermission bool = true

@description('NCRONTAB, 6 fields, UTC: when the timer syncs.')
param syncSchedule string = '0 */15 * * * *'

@description('The timer\'s sync type and the webhook\'s default.')
@allowed([
  'deltaSync'
  'fullSync'
])
param syncType string = 'deltaSync'

@description('The sync targets (SYNC_TARGETS). The Graph application roles granted are exactly those these targets need.')
@allowed([
  'exchangeConnectors'
  'vppTokens'
  'depOnboardingSettings'
  'windowsAutopilotSettings'
  'androidManagedStoreAccountEnterpriseSettings'
  'windowsDriverUpdateProfiles'
  'managedDevices'
])
param syncTargets array = [
  'exchangeConnectors'
]

@description('Connector ids to sync, comma separated; empty syncs every connector in the tenant.')
param exchangeConnectorIds string = ''

@description('Microsoft Graph root of the tenant\'s cloud.')
@allowed([
  'https://graph.microsoft.com'
  'https://graph.microsoft.us'
  'https://dod-graph.microsoft.us'
  'https://microsoftgraph.chinacloudapi.cn'
])
param graphEndpoint string = 'https://graph.microsoft.com'

@description('Upper bound on Flex Consumption instances. sync_tenant scales out on the sync-tenants queue (one instance syncs about 16 tenants at once); the bound keeps a burst from fanning out against Graph\'s per-tenant limits.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('E-mail address the alerts go to; empty for none (the alert rules exist and show in the portal either way).')
param alertEmail string = ''

@description('Webhook URL the alerts go to, such as a Teams or Slack incoming webhook; empty for none.')
@secure()
param alertWebhookUrl string = ''

@description('A Teams workflow\'s URL for changed findings (NOTIFY_TEAMS_WEBHOOK_URL); empty for none. It carries the workflow\'s signature: kept secure, never output.')
@secure()
param notifyTeamsWebhookUrl string = ''

@description('Another receiver\'s URL for changed findings, signed with Standard Webhooks (NOTIFY_WEBHOOK_URL); empty for none.')
@secure()
param notifyWebhookUrl string = ''

@description('The signing key of notifyWebhookUrl (NOTIFY_WEBHOOK_SECRET): whsec_ and base64.')
@secure()
param notifyWebhookSecret string = ''

param tags object = {}

var suffix = take(uniqueString(subscription().id, resourceGroup().id, name), 8)
var deploymentContainer = 'app-package-${suffix}'
var manyTenants = !empty(tenantIds)
// A system-assigned identity cannot be a federated credential: many tenants need a user-assigned one.
var userAssigned = useUserAssignedIdentity || manyTenants
var identityClientId = userAssigned ? userIdentity.properties.clientId : ''
var identityPrincipalId = userAssigned ? userIdentity.properties.principalId : app.identity.principalId
// This cloud's Entra authority, as azure-identity's AZURE_AUTHORITY_HOST takes it.
var authority = replace(replace(environment().authentication.loginEndpoint, 'https://', ''), '/', '')
var hostSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  // The app's stored state (shared/store.py): its tables, created by the app on first use.
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  AzureWebJobsStorage__credential: 'managedidentity'
  // sync_tenant runs host.json's batchSize (16) messages at once: the worker's threads must let it.
  PYTHON_THREADPOOL_THREAD_COUNT: '16'
  APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: userAssigned ? 'ClientId=${identityClientId};Authorization=AAD' : 'Authorization=AAD'
}
// The Graph application permissions each target needs (shared/targets/: each module's `permission`, and its
// `read_permission` where the action's does not cover reading).
var targetPermissions = {
  exchangeConnectors: ['DeviceManagementServiceConfig.ReadWrite.All']
  vppTokens: ['DeviceManagementServiceConfig.ReadWrite.All']
  depOnboardingSettings: ['DeviceManagementServiceConfig.ReadWrite.All']
  windowsAutopilotSettings: ['DeviceManagementServiceConfig.ReadWrite.All']
  androidManagedStoreAccountEnterpriseSettings: ['DeviceManagementConfiguration.ReadWrite.All']
  windowsDriverUpdateProfiles: ['DeviceManagementConfiguration.ReadWrite.All']
  managedDevices: ['DeviceManagementManagedDevices.PrivilegedOperations.All', 'DeviceManagementManagedDevices.Read.All']
}
// Each role once: union() of arrays drops duplicates.
var graphAppRoles = union(flatten(map(syncTargets, target => targetPermissions[target])), [])
// The app's own settings (README, 'Settings').
var syncSettings = {
  SYNC_TARGETS: join(syncTargets, ',')
  SYNC_SCHEDULE: syncSchedule
  SYNC_TYPE: syncType
  EXCHANGE_CONNECTOR_IDS: exchangeConnectorIds
  GRAPH_ENDPOINT: graphEndpoint
}
// Set only where given: an empty notification setting is the same as none.
var notifySettings = union(
  empty(notifyTeamsWebhookUrl) ? {} : { NOTIFY_TEAMS_WEBHOOK_URL: notifyTeamsWebhookUrl },
  empty(notifyWebhookUrl) ? {} : { NOTIFY_WEBHOOK_URL: notifyWebhookUrl, NOTIFY_WEBHOOK_SECRET: notifyWebhookSecret }
)
// ManagedIdentityCredential does not read AZURE_CLIENT_ID by itself on App Service: the app passes it.
var userIdentitySettings = userAssigned ? {
  AzureWebJobsStorage__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
} : {}
var tenantSettings = manyTenants ? {
  TENANT_IDS: join(tenantIds, ',')
  TENANT_APP_CLIENT_ID: multiTenantApp.outputs.appId
  TENANT_CONCURRENCY: string(tenantConcurrency)
  AZURE_AUTHORITY_HOST: 'https://${authority}'
} : {}
// Built-in role ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// The queue trigger reads, updates and deletes messages and moves the last try to the poison queue; the timer and
// the webhook put messages: Contributor covers all of it (Message Processor plus Sender would not create the queue).
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
// The stored state: the app creates its two tables and reads and writes their rows.
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${name}-${suffix}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${name}-${suffix}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${take(toLower(replace(name, '-', '')), 14)}${suffix}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }

  resource blobs 'blobServices' = {
    name: 'default'

    resource packages 'containers' = {
      name: deploymentContainer
    }
  }
}

// Many tenants (README, 'Many tenants'): one message per tenant, and where a message goes after its last try.
resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tenantQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'sync-tenants'
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'sync-tenants-poison'
}

resource userIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (userAssigned) {
  name: 'id-${name}-${suffix}'
  location: location
  tags: tags
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${name}-${suffix}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-${name}-${suffix}'
  location: location
  tags: union(tags, { 'azd-service-name': 'sync' })
  kind: 'functionapp,linux'
  identity: userAssigned ? {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${userIdentity.id}': {}
    }
  } : {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: userAssigned ? {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: userIdentity.id
          } : {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app
  name: 'appsettings'
  properties: union(hostSettings, syncSettings, userIdentitySettings, tenantSettings, notifySettings)
}

// Deployments go through Entra ID (OneDeploy); the basic-auth FTP and SCM endpoints stay off.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

// The host keeps its state and the deployment package in blobs: only the identity can reach them.
resource storageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
  }
}

// The tenants' queue (sync-tenants) and its poison queue, through the same identity.
resource queueAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageQueueDataContributor)
  scope: storage
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
  }
}

// The stored state (syncstate, synchistory), through the same identity.
resource tableAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageTableDataContributor)
  scope: storage
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
  }
}

// Application Insights accepts telemetry only from Entra ID (DisableLocalAuth): the identity may publish it.
resource telemetryAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identityPrincipalId, monitoringMetricsPublisher)
  scope: insights
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}

// With tenantIds the identity acts only as the multi-tenant app's credential: the permissions are the app's, and each
// customer tenant grants them by consenting.
module multiTenantApp 'multi-tenant-app.bicep' = if (manyTenants) {
  name: 'multi-tenant-app-${suffix}'
  params: {
    uniqueName: 'intune-sync-${name}-${suffix}'
    displayName: 'Intune sync (${name})'
    identityPrincipalId: identityPrincipalId
    authority: 'https://${authority}'
    appRoles: graphAppRoles
  }
}

module graphPermission 'graph-permission.bicep' = if (grantGraphPermission && !manyTenants) {
  name: 'graph-permission-${suffix}'
  params: {
    principalId: identityPrincipalId
    appRoles: graphAppRoles
  }
}

// Alerts. Each query matches what the app writes (README, 'Expiry watch and alerts'): the Functions host records
// every timer invocation in `requests`; the app logs each object that failed as `... outcome=failed ...` and each
// expiry finding as a line that starts with `expiry-warning` (shared/watch.py), both in `traces`.
var failedSyncsQuery = 'union (requests | where operation_Name =~ "sync_timer" and success == false), (traces | where message contains "outcome=failed")'
var expiryQuery = 'traces | where message startswith "expiry-warning"'
// A tenant's message that used up its tries: the app's last-try line and the host's own both name the poison queue.
var poisonQuery = 'traces | where message contains "sync-tenants-poison"'

resource alertReceivers 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${name}-${suffix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take('intunesync', 12)
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [{ name: 'email', emailAddress: alertEmail, useCommonAlertSchema: true }]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [{ name: 'webhook', serviceUri: alertWebhookUrl, useCommonAlertSchema: true }]
  }
}

resource failedSyncsAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-${name}-failed-syncs-${suffix}'
  location: location
  tags: tags
  properties: {
    displayName: 'Intune sync: a timer run or a sync failed'
    description: 'A sync_timer invocation failed, or Graph refused or failed a sync. The trace lines name the target, object, Graph request-id and the fix.'
    severity: 2
    enabled: true
    scopes: [
      insights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: failedSyncsQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        alertReceivers.id
      ]
    }
  }
}

resource expiryAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-${name}-expiry-${suffix}'
  location: location
  tags: tags
  properties: {
    displayName: 'Intune sync: an Apple token or certificate expires soon, or a connection is in error'
    description: 'The expiry watch found the Apple push certificate, a VPP or ADE token expiring within EXPIRY_WARNING_DAYS (or expired), or Managed Google Play in error. Each trace line says how to renew.'
    severity: 2
    enabled: true
    scopes: [
      insights.id
    ]
    evaluationFrequency: 'P1D'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: expiryQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        alertReceivers.id
      ]
    }
  }
}

resource poisonAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-${name}-poison-${suffix}'
  location: location
  tags: tags
  properties: {
    displayName: 'Intune sync: a tenant was not synced after every retry'
    description: 'A sync-tenants message failed on each of its tries (host.json maxDequeueCount) and went to sync-tenants-poison. The trace line names the tenant, why, and what to do; the tenant is synced again at the next cycle.'
    severity: 2
    enabled: true
    scopes: [
      insights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: poisonQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        alertReceivers.id
      ]
    }
  }
}

output functionAppName string = app.name
output webhookUrl string = 'https://${app.properties.defaultHostName}/api/sync'
@description('The status page; add ?code=<function key> to open it in a browser.')
output statusPageUrl string = 'https://${app.properties.defaultHostName}/api/status'
@description('Object id of the app\'s managed identity: what `python -m shared grant --principal-id` takes.')
output identityPrincipalId string = identityPrincipalId
output graphPermissionGranted bool = grantGraphPermission && !manyTenants
@description('With tenantIds: TENANT_APP_CLIENT_ID, the multi-tenant app registration\'s client id.')
output tenantAppClientId string = manyTenants ? multiTenantApp.outputs.appId : ''
@description('With tenantIds: the page each customer tenant\'s administrator opens once to consent (README, \'Many tenants\').')
output consentUrls array = [for tenantId in tenantIds: 'https://${authority}/${tenantId}/adminconsent?client_id=${manyTenants ? multiTenantApp.outputs.appId : ''}']
