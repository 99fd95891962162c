"""The OpenAI Responses API over the chat pipeline: the request (``request``), what the client
receives (``render``) and the exchange the chat endpoint serves it through (``exchange``)."""
