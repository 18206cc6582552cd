output "cluster_name" {
  description = "Cluster name (gcloud container clusters get-credentials NAME --region REGION)."
  value       = google_container_cluster.this.name
}

output "location" {
  description = "Cluster location (region)."
  value       = google_container_cluster.this.location
}

output "endpoint" {
  description = "Control plane endpoint."
  value       = google_container_cluster.this.endpoint
  sensitive   = true
}

output "workload_identity_pool" {
  description = "Workload Identity pool of the cluster."
  value       = "${var.project_id}.svc.id.goog"
}

output "workload_identity_members" {
  description = "The Workload Identity member bound to each Google service account, by Kubernetes service account name."
  value       = { for ksa, b in google_service_account_iam_member.workload_identity : ksa => b.member }
}
