output "email" {
  description = "E-mail of the Google service account (the KSA annotation iam.gke.io/gcp-service-account)."
  value       = google_service_account.licensed.email
}

output "member" {
  description = "IAM member string (serviceAccount:EMAIL) for bindings."
  value       = google_service_account.licensed.member
}

output "name" {
  description = "Full resource name of the service account (projects/P/serviceAccounts/EMAIL), for the Workload Identity binding."
  value       = google_service_account.licensed.name
}
