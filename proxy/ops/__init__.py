"""Operating perfics: Prometheus metrics (``metrics``), OpenTelemetry spans (``tracing``),
what the chat endpoint reports per request (``meter``), and the dashboard (``dashboard``,
``live``, ``policy_view``, ``charts``, ``html``, ``static/``). Their routes are in
``proxy.app_ops``."""
