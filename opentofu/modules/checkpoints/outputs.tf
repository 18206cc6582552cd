output "bucket_name" {
  description = "Name of the checkpoint bucket: bucketName of the signer's Cloud Storage FUSE volume (deploy/k8s)."
  value       = google_storage_bucket.checkpoints.name
}

output "retention_days" {
  description = "Locked retention period in days: no checkpoint can be deleted or replaced before it is this old."
  value       = var.retention_days
}
