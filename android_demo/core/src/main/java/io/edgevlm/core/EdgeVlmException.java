package io.edgevlm.core;

/** A user-facing problem with a one-line message (mirrors Python's {@code EdgeVLMError}). */
public class EdgeVlmException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public EdgeVlmException(String message) {
        super(message);
    }

    public EdgeVlmException(String message, Throwable cause) {
        super(message, cause);
    }
}
