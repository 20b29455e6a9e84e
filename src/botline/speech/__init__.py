"""Spoken answers: text prepared for the ear, synthesis through an OpenAI-compatible /audio/speech,
and a cache so the same answer is paid for once (docs/gateways.md, "Spoken answers")."""

from botline.speech.synthesizer import AudioFormat, SpeechAudio, SpeechError, Synthesizer

__all__ = ["AudioFormat", "SpeechAudio", "SpeechError", "Synthesizer"]
