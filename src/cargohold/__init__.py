"""cargohold: a container registry (OCI Distribution API) and a registry client."""

__version__ = "0.1.0"
