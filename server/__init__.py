"""The websocket server: `asr serve` (Vosk-compatible protocol, one shared BatchEngine)."""
