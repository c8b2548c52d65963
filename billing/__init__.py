"""Payment providers, orders, payment events and webhook ingestion."""
