"""One module per provider: build the request from a Subject, send it through the shared client,
map the documented answers. Each provider's quirks live in its module and nowhere else."""
