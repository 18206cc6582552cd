# One Google service account (GSA) per License Ledger workload, each used by
# exactly one Kubernetes service account through Workload Identity (gke
# module). None of them gets a project-level role here. What each may do is
# granted on single resources elsewhere:
#
#   serve    kms module: read public keys and list versions of the signing key
#   sign     kms module: sign with the key; checkpoints module: create (and
#            list/read) objects in the checkpoint bucket
#   publish, project, reap, migrate: nothing in Google Cloud (they reach only
#            Postgres, Redis and NATS, which authenticate them with passwords)
#
# The GSAs without roles still exist so that every pod has its own, auditable
# identity and nothing is ever granted to a shared one.

resource "google_service_account" "workload" {
  for_each     = toset(var.workloads)
  project      = var.project_id
  account_id   = "${var.account_id_prefix}-${each.value}"
  display_name = "License Ledger ${each.value} (licensed ${each.value})"
  description  = "Runs the licensed-${each.value} pods on GKE through Workload Identity. Roles only on single resources (see opentofu/modules/iam/README.md)."
}
