output "key_ring_id" {
  description = "Key ring resource name."
  value       = google_kms_key_ring.this.id
}

output "key_name" {
  description = "CryptoKey resource name: KMS_KEY_NAME (every ENABLED version of it is published in the JWKS)."
  value       = google_kms_crypto_key.signing.id
}

output "initial_key_version" {
  description = "Resource name of version 1, created with the key: the first KMS_KEY_VERSION. After a rotation the ConfigMap, not this output, says which version signs."
  value       = "${google_kms_crypto_key.signing.id}/cryptoKeyVersions/1"
}
