# The checkpoint bucket: the audit's external anchor. The signer writes every
# signed checkpoint of the log into it as one object
# (checkpoint-<position>.json, written once, never replaced) through the
# Cloud Storage FUSE CSI driver (CHECKPOINT_DIR on the signer pods). Whoever
# can write the database cannot reach these copies, and the locked retention
# policy keeps anyone - the project owner included - from deleting or
# overwriting an object before it is retention_days old.

resource "google_storage_bucket" "checkpoints" {
  #checkov:skip=CKV_GCP_78:Object Versioning cannot be enabled on a bucket with a retention policy (Cloud Storage refuses the combination); the locked retention policy is stronger: no object can be overwritten or deleted while it is retained, so there is never a noncurrent version to keep.
  #checkov:skip=CKV_GCP_62:Usage logs would need a second bucket with its own retention; Cloud Audit Logs (DATA_READ, DATA_WRITE for storage.googleapis.com, enabled below) record every read and write of the objects with the caller's identity.
  project                     = var.project_id
  name                        = var.name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = var.labels

  # Explicitly off: see the skip of CKV_GCP_78 above.
  versioning {
    enabled = false
  }

  # Locking is irreversible: the period can be raised later, never lowered,
  # and the bucket cannot be deleted while it holds retained objects.
  retention_policy {
    retention_period = var.retention_days * 86400
    is_locked        = true
  }

  lifecycle {
    prevent_destroy = true
  }
}

# The signer: create objects (storage.objects.create, no delete, so no
# overwrite or rename) and list/read them (the FUSE mount lists the
# directory; the signer reads the newest checkpoint to notice deleted
# checkpoint rows in the database).
resource "google_storage_bucket_iam_member" "writer_create" {
  for_each = toset(var.writer_members)
  bucket   = google_storage_bucket.checkpoints.name
  role     = "roles/storage.objectCreator"
  member   = each.value
}

resource "google_storage_bucket_iam_member" "writer_read" {
  for_each = toset(var.writer_members)
  bucket   = google_storage_bucket.checkpoints.name
  role     = "roles/storage.objectViewer"
  member   = each.value
}

# Auditors read the checkpoints (ledger verify --checkpoint-dir).
resource "google_storage_bucket_iam_member" "auditor_read" {
  for_each = toset(var.auditor_members)
  bucket   = google_storage_bucket.checkpoints.name
  role     = "roles/storage.objectViewer"
  member   = each.value
}

# Data Access audit logs for Cloud Storage in this project: who read or
# wrote which object, when. (Admin Activity, e.g. IAM or retention changes,
# is always logged.)
resource "google_project_iam_audit_config" "storage" {
  count   = var.enable_data_access_logs ? 1 : 0
  project = var.project_id
  service = "storage.googleapis.com"

  audit_log_config {
    log_type = "DATA_READ"
  }

  audit_log_config {
    log_type = "DATA_WRITE"
  }
}
