"""The gemini-cli provider: Google's Code Assist API (`v1internal`), as the Gemini CLI uses it."""
