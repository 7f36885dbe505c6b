"""Reference plugins that run inside other people's tools: the emitter (`emit`) and the git / Claude Code hooks
(`hooks`). They send events to the gateway over HTTP and read only the environment variables they need (docs/PLUGINS.md)."""
