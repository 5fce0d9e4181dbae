"""One request path to the model: templates, chat vs completions, n splitting, usage, prices, retries,
the local server."""
