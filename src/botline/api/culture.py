"""UI strings of the chat page by language; `languageCode: null` picks from Accept-Language."""

from __future__ import annotations

from aiohttp import web

DEFAULT_LANGUAGE = "en"

CULTURES: dict[str, dict[str, str]] = {
    "en": {
        "sendButtonLabel": "Send",
        "inputPlaceholder": "Type a message...",
        "stopButtonLabel": "Stop",
        "retryButtonLabel": "Retry",
        "newConversationLabel": "New conversation",
        "downloadTranscriptLabel": "Download transcript",
        "attachImageLabel": "Attach an image",
        "attachDocumentLabel": "Attach a document",
        "attachAudioLabel": "Attach audio",
        "removeAttachmentLabel": "Remove attachment",
        "cancelledLabel": "Stopped",
        "errorLabel": "Something went wrong.",
        "sessionEndedLabel": "This conversation has ended.",
        "thinkingLabel": "Thinking...",
        "toolRunningLabel": "Using {name}...",
        "toolFinishedLabel": "Used {name}",
        "openChatLabel": "Open chat",
        "closeChatLabel": "Close chat",
        "muteLabel": "Mute spoken answers",
        "unmuteLabel": "Play spoken answers",
        "spokenAnswerLabel": "Spoken answer",
        "reasoningLabel": "Thought process",
        "sourcesLabel": "Sources ({count})",
        "messagesLabel": "Messages",
        "youLabel": "You",
        "assistantLabel": "Assistant",
    },
    "pt-BR": {
        "sendButtonLabel": "Enviar",
        "inputPlaceholder": "Digite uma mensagem...",
        "stopButtonLabel": "Parar",
        "retryButtonLabel": "Tentar novamente",
        "newConversationLabel": "Nova conversa",
        "downloadTranscriptLabel": "Baixar transcrição",
        "attachImageLabel": "Anexar uma imagem",
        "attachDocumentLabel": "Anexar um documento",
        "attachAudioLabel": "Anexar áudio",
        "removeAttachmentLabel": "Remover anexo",
        "cancelledLabel": "Interrompido",
        "errorLabel": "Algo deu errado.",
        "sessionEndedLabel": "Esta conversa foi encerrada.",
        "thinkingLabel": "Pensando...",
        "toolRunningLabel": "Usando {name}...",
        "toolFinishedLabel": "Usou {name}",
        "openChatLabel": "Abrir chat",
        "closeChatLabel": "Fechar chat",
        "muteLabel": "Silenciar respostas faladas",
        "unmuteLabel": "Ouvir respostas faladas",
        "spokenAnswerLabel": "Resposta falada",
        "reasoningLabel": "Raciocínio",
        "sourcesLabel": "Fontes ({count})",
        "messagesLabel": "Mensagens",
        "youLabel": "Você",
        "assistantLabel": "Assistente",
    },
    "es": {
        "sendButtonLabel": "Enviar",
        "inputPlaceholder": "Escribe un mensaje...",
        "stopButtonLabel": "Detener",
        "retryButtonLabel": "Reintentar",
        "newConversationLabel": "Nueva conversación",
        "downloadTranscriptLabel": "Descargar transcripción",
        "attachImageLabel": "Adjuntar una imagen",
        "attachDocumentLabel": "Adjuntar un documento",
        "attachAudioLabel": "Adjuntar audio",
        "removeAttachmentLabel": "Quitar adjunto",
        "cancelledLabel": "Detenido",
        "errorLabel": "Algo salió mal.",
        "sessionEndedLabel": "Esta conversación ha terminado.",
        "thinkingLabel": "Pensando...",
        "toolRunningLabel": "Usando {name}...",
        "toolFinishedLabel": "Usó {name}",
        "openChatLabel": "Abrir chat",
        "closeChatLabel": "Cerrar chat",
        "muteLabel": "Silenciar respuestas habladas",
        "unmuteLabel": "Escuchar respuestas habladas",
        "spokenAnswerLabel": "Respuesta hablada",
        "reasoningLabel": "Razonamiento",
        "sourcesLabel": "Fuentes ({count})",
        "messagesLabel": "Mensajes",
        "youLabel": "Tú",
        "assistantLabel": "Asistente",
    },
}


def _match(code: str) -> str | None:
    code = code.strip()
    for known in CULTURES:
        if known.lower() == code.lower():
            return known
    primary = code.split("-")[0].lower()
    return next((known for known in CULTURES if known.split("-")[0].lower() == primary), None)


def pick_language(configured: str | None, request: web.Request) -> str:
    """The client's languageCode when set and known, else the browser's first known language."""
    if configured and (known := _match(configured)):
        return known
    for item in request.headers.get("Accept-Language", "").split(","):
        if (tag := item.split(";")[0]) and (known := _match(tag)):
            return known
    return DEFAULT_LANGUAGE
