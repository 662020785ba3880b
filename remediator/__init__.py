"""remediator: an Ansible-backed remediation engine for Prometheus Alertmanager alerts.

`remediator.engine` is the core (framework-free); `remediator.api` the HTTP face over it.
"""
