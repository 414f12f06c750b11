package io.edgevlm.core;

/** An unknown task name; the message lists the loaded tasks. */
public class TaskException extends EdgeVlmException {
    private static final long serialVersionUID = 1L;

    public TaskException(String message) {
        super(message);
    }
}
