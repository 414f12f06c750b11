package io.edgevlm.core;

/** An invalid option or input (empty input, max_new_tokens beyond the context, ...). */
public class ConfigException extends EdgeVlmException {
    private static final long serialVersionUID = 1L;

    public ConfigException(String message) {
        super(message);
    }
}
