# Production environment of License Ledger: wires the modules together and
# outputs what the Kubernetes configuration (deploy/k8s/overlays/production)
# and the Secret `licensed-secrets` need.

locals {
  labels = {
    app         = "license-ledger"
    environment = "prod"
  }

  services = [
    "artifactregistry.googleapis.com",
    "binaryauthorization.googleapis.com",
    "cloudkms.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "dns.googleapis.com",
    "iam.googleapis.com",
    "identitytoolkit.googleapis.com",
    "redis.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "this" {
  for_each           = toset(local.services)
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

module "network" {
  source                = "../../modules/network"
  project_id            = var.project_id
  region                = var.region
  private_services_cidr = var.private_services_cidr

  depends_on = [google_project_service.this]
}

module "iam" {
  source     = "../../modules/iam"
  project_id = var.project_id

  depends_on = [google_project_service.this]
}

# Only the signer signs; the API reads public keys and lists versions; the
# other workloads get nothing on the key.
module "kms" {
  source                    = "../../modules/kms"
  project_id                = var.project_id
  location                  = var.region
  protection_level          = var.kms_protection_level
  signer_members            = [module.iam.members["sign"]]
  public_key_viewer_members = [module.iam.members["serve"]]
  labels                    = local.labels

  depends_on = [google_project_service.this]
}

module "identity_platform" {
  source               = "../../modules/identity_platform"
  project_id           = var.project_id
  authorized_domains   = var.authorized_domains
  multi_tenant         = var.multi_tenant
  tenants              = var.tenants
  google_client_id     = var.google_client_id
  google_client_secret = var.google_client_secret
  github_client_id     = var.github_client_id
  github_client_secret = var.github_client_secret

  depends_on = [google_project_service.this]
}

module "gke" {
  source                     = "../../modules/gke"
  project_id                 = var.project_id
  region                     = var.region
  network_name               = module.network.network_name
  subnetwork_name            = module.network.subnetwork_name
  pods_range_name            = module.network.pods_range_name
  services_range_name        = module.network.services_range_name
  master_authorized_networks = var.master_authorized_networks
  k8s_namespace              = var.k8s_namespace
  labels                     = local.labels

  # KSA licensed-<workload> acts as GSA licensed-<workload>, nothing else.
  workload_identities = { for w, name in module.iam.names : "licensed-${w}" => name }
}

module "cloudsql" {
  source     = "../../modules/cloudsql"
  project_id = var.project_id
  region     = var.region
  network_id = module.network.network_id
  tier       = var.db_tier
  labels     = local.labels

  depends_on = [module.network]
}

# The audit's external anchor: signed checkpoints, retention-locked.
module "checkpoints" {
  source          = "../../modules/checkpoints"
  project_id      = var.project_id
  name            = "${var.project_id}-license-ledger-checkpoints"
  location        = var.region
  retention_days  = var.checkpoint_retention_days
  writer_members  = [module.iam.members["sign"]]
  auditor_members = var.auditor_members
  labels          = local.labels

  depends_on = [google_project_service.this]
}

module "memorystore" {
  source                 = "../../modules/memorystore"
  project_id             = var.project_id
  region                 = var.region
  network_id             = module.network.network_id
  reserved_ip_range_name = module.network.private_services_range_name
  memory_size_gb         = var.redis_memory_size_gb
  labels                 = local.labels

  depends_on = [module.network]
}

# Container images (deploy/Dockerfile) are pushed here.
resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Images hold no secrets or customer data; Google-managed encryption is sufficient, and a CMEK key would need its own rotation and access management.
  project       = var.project_id
  location      = var.region
  repository_id = "license-ledger"
  format        = "DOCKER"
  description   = "License Ledger container images"
  labels        = local.labels

  docker_config {
    immutable_tags = true
  }

  depends_on = [google_project_service.this]
}

# The nodes pull images as the Autopilot default node service account.
data "google_project" "this" {
  project_id = var.project_id
}

resource "google_artifact_registry_repository_iam_member" "node_reader" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${data.google_project.this.number}-compute@developer.gserviceaccount.com"
}

# HTTPS entry point used by the GKE Ingress (deploy/k8s/overlays/production/ingress.yaml).
resource "google_compute_global_address" "ingress" {
  project = var.project_id
  name    = "licensed-ip"

  depends_on = [google_project_service.this]
}

resource "google_compute_managed_ssl_certificate" "ingress" {
  project = var.project_id
  name    = "licensed-cert"

  managed {
    domains = [var.domain]
  }

  depends_on = [google_project_service.this]
}
