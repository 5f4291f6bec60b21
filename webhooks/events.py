"""The event types an endpoint can subscribe to. The apps that emit them own their payloads."""

ENRICHMENT_COMPLETED = "enrichment.completed"
ENRICHMENT_BATCH_COMPLETED = "enrichment_batch.completed"
EVENT_TYPES = (ENRICHMENT_COMPLETED, ENRICHMENT_BATCH_COMPLETED)
