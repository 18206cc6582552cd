# GKE Autopilot cluster. Autopilot always runs Workload Identity (pool
# PROJECT.svc.id.goog), GKE Dataplane V2 (NetworkPolicy enforced), Shielded
# GKE nodes, the GKE metadata server and the Cloud Storage FUSE CSI driver
# (the signer mounts the checkpoint bucket with it); this module binds each
# workload's Kubernetes service account to its own Google service account.

resource "google_container_cluster" "this" {
  #checkov:skip=CKV_GCP_12:Autopilot always enforces NetworkPolicy through GKE Dataplane V2; the network_policy block is not accepted on Autopilot clusters.
  #checkov:skip=CKV_GCP_13:Autopilot never issues client certificates; the module leaves master_auth unset.
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Workspace domain; access is granted with IAM roles on the project instead.
  #checkov:skip=CKV_GCP_69:Autopilot always enables the GKE metadata server (workload_metadata_config cannot be set).
  #checkov:skip=CKV_GCP_61:Node networking, including intranode visibility, is managed by Autopilot; the module does not set it. Subnet flow logs are on (network module).
  project  = var.project_id
  name     = var.name
  location = var.region

  enable_autopilot    = true
  deletion_protection = var.deletion_protection

  network    = var.network_name
  subnetwork = var.subnetwork_name

  ip_allocation_policy {
    cluster_secondary_range_name  = var.pods_range_name
    services_secondary_range_name = var.services_range_name
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = var.enable_private_endpoint
    master_ipv4_cidr_block  = var.master_ipv4_cidr_block

    master_global_access_config {
      enabled = false
    }
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.master_authorized_networks
      content {
        cidr_block   = cidr_blocks.value
        display_name = "authorized-${cidr_blocks.key}"
      }
    }
  }

  release_channel {
    channel = var.release_channel
  }

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  resource_labels = merge(var.labels, { app = "license-ledger" })

  maintenance_policy {
    recurring_window {
      start_time = "2024-01-06T02:00:00Z"
      end_time   = "2024-01-06T08:00:00Z"
      recurrence = "FREQ=WEEKLY;BYDAY=SA,SU"
    }
  }

  # Managed Service for Prometheus scrapes /metrics (docs/operations.md).
  monitoring_config {
    managed_prometheus {
      enabled = true
    }
  }
}

# Workload Identity: each Kubernetes service account NAMESPACE/<ksa> may act
# as its own Google service account, and no other. The pool exists once the
# cluster does.
resource "google_service_account_iam_member" "workload_identity" {
  for_each           = var.workload_identities
  service_account_id = each.value
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.k8s_namespace}/${each.key}]"

  depends_on = [google_container_cluster.this]
}
