"""The HTTP side: the request context, routes, responses and the OpenAPI document."""
