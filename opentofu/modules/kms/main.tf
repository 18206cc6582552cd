# Key ring and the RSA-4096 PKCS#1 v1.5 SHA-256 key that signs license tokens.
#
# No rotation_period: Cloud KMS does not rotate asymmetric keys automatically.
# Rotation is a new key version created by hand and a configuration switch;
# see docs/operations.md, "Key rotation". The CI check refuses a
# rotation_period on an ASYMMETRIC_SIGN key (deploy/ci/checkov-policies).

resource "google_kms_key_ring" "this" {
  project  = var.project_id
  name     = var.key_ring_name
  location = var.location
}

resource "google_kms_crypto_key" "signing" {
  name     = var.key_name
  key_ring = google_kms_key_ring.this.id
  purpose  = "ASYMMETRIC_SIGN"

  version_template {
    algorithm        = "RSA_SIGN_PKCS1_4096_SHA256"
    protection_level = var.protection_level
  }

  labels = var.labels

  # Destroying the key makes every token ever issued unverifiable.
  lifecycle {
    prevent_destroy = true
  }
}

# Sign and read public keys: cloudkms.cryptoKeyVersions.useToSign,
# useToVerify, viewPublicKey - on this key only. Only the signer workload.
resource "google_kms_crypto_key_iam_member" "signer" {
  for_each      = toset(var.signer_members)
  crypto_key_id = google_kms_crypto_key.signing.id
  role          = "roles/cloudkms.signerVerifier"
  member        = each.value
}

# Read public keys (cloudkms.cryptoKeyVersions.viewPublicKey), nothing else:
# the API publishes them in its JWKS and hands them out with tokens. It can
# neither sign nor verify with the key.
resource "google_kms_crypto_key_iam_member" "public_key_viewer" {
  for_each      = toset(var.public_key_viewer_members)
  crypto_key_id = google_kms_crypto_key.signing.id
  role          = "roles/cloudkms.publicKeyViewer"
  member        = each.value
}

# The JWKS publishes every ENABLED version of the key, so whoever builds it
# must list the key's versions and read their state. No predefined role
# grants only that (cloudkms.viewer is broader), hence this two-permission
# role, also granted on this key only, to the signer and the public key
# viewers.
resource "google_project_iam_custom_role" "version_lister" {
  project     = var.project_id
  role_id     = var.version_lister_role_id
  title       = "License Ledger KMS key version lister"
  description = "List the versions of a KMS key and read their metadata (state), to publish the ENABLED ones in the JWKS."
  permissions = [
    "cloudkms.cryptoKeyVersions.get",
    "cloudkms.cryptoKeyVersions.list",
  ]
}

resource "google_kms_crypto_key_iam_member" "version_lister" {
  for_each      = toset(concat(var.signer_members, var.public_key_viewer_members))
  crypto_key_id = google_kms_crypto_key.signing.id
  role          = google_project_iam_custom_role.version_lister.name
  member        = each.value
}
