output "emails" {
  description = "E-mail of each workload's Google service account, by workload (the KSA annotation iam.gke.io/gcp-service-account)."
  value       = { for w, sa in google_service_account.workload : w => sa.email }
}

output "members" {
  description = "IAM member string (serviceAccount:EMAIL) of each workload's GSA, by workload."
  value       = { for w, sa in google_service_account.workload : w => sa.member }
}

output "names" {
  description = "Full resource name (projects/P/serviceAccounts/EMAIL) of each workload's GSA, by workload, for the Workload Identity bindings."
  value       = { for w, sa in google_service_account.workload : w => sa.name }
}
