"""What remediator tells the world: notifications, metrics, and what it asks Prometheus."""
