"""Exception names the official code catches (openai<1.0 `openai.error`)."""


class OpenAIError(Exception):
    pass


class Timeout(OpenAIError):
    pass


class RateLimitError(OpenAIError):
    pass


class APIError(OpenAIError):
    pass


class APIConnectionError(OpenAIError):
    pass


class ServiceUnavailableError(OpenAIError):
    pass


class AuthenticationError(OpenAIError):
    pass


class PermissionError(OpenAIError):
    pass


class InvalidRequestError(OpenAIError):
    pass
