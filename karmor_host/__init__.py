"""karmor-host: a runtime security agent for Linux hosts (KubeArmorHostPolicy compatible)."""

__version__ = "0.1.0"
