"""The data sources: adapters by name, their shared HTTP client, rate limiter, circuit breaker and
call log. Knows Subject -> answer, nothing of enrichments."""
