"""The catalog of vetted playbooks: Ansible roles with argument specs and remediator metadata."""
