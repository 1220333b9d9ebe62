"""Kiro (CodeWhisperer / Q `generateAssistantResponse`): Claude models over the AWS event stream.

credentials.py  token file, refresh (social / IdC), atomic rotation
request.py      canonical ChatRequest -> conversationState
eventstream.py  the binary AWS event-stream framing (botocore, CRC-verified)
decoder.py      frames -> canonical stream events
errors.py       HTTP error bodies -> llmbridge.errors
models.py       client model names <-> Kiro model ids
provider.py     the Provider
"""
