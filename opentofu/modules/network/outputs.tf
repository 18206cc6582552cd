output "network_id" {
  description = "VPC id (projects/P/global/networks/N), for Cloud SQL and Memorystore."
  value       = google_compute_network.this.id
}

output "network_name" {
  description = "VPC name, for the GKE cluster."
  value       = google_compute_network.this.name
}

output "subnetwork_name" {
  description = "GKE subnet name."
  value       = google_compute_subnetwork.gke.name
}

output "pods_range_name" {
  description = "Secondary range name for pods."
  value       = "pods"
}

output "services_range_name" {
  description = "Secondary range name for Services."
  value       = "services"
}

output "private_services_range_name" {
  description = "Name of the private services access range (Memorystore reserved_ip_range)."
  value       = google_compute_global_address.private_services.name
}

output "private_services_cidr" {
  description = "CIDR of the private services access range (Cloud SQL and Memorystore addresses)."
  value       = var.private_services_cidr
}

output "private_services_connection" {
  description = "The service networking connection; depend on it before creating private Cloud SQL or Memorystore."
  value       = google_service_networking_connection.private_services.id
}
