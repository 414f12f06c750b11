package io.edgevlm.core;

/** A bundle is malformed, tampered with or of an unknown schema; the message names the file and the field. */
public class BundleException extends EdgeVlmException {
    private static final long serialVersionUID = 1L;

    public BundleException(String message) {
        super(message);
    }
}
