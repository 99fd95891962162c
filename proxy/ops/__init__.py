"""Operating perfics: Prometheus metrics (``metrics``), OpenTelemetry spans (``tracing``),
what the chat endpoint reports per request (``observer``), and the dashboard (``dashboard``,
``charts``, ``live``, ``static/``). Their routes are ``proxy.app_ops``."""
