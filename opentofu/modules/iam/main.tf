# The Google service account the License Ledger pods run as (through
# Workload Identity). It gets no project-level role here: the kms module
# grants it signing on the one key, the gke module lets the Kubernetes
# service account impersonate it. Nothing else.

resource "google_service_account" "licensed" {
  project      = var.project_id
  account_id   = var.account_id
  display_name = "License Ledger service (licensed)"
  description  = "Runs the licensed pods on GKE through Workload Identity; may sign with the license-token KMS key."
}
