package dev.tandem;

/**
 * A failed call into the library: its status code (the C ABI's {@code TANDEM_ERR_*}) and the
 * library's message, which names what was wrong (the file, the option, the sizes).
 */
public final class TandemException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** A bad argument or option, a token outside the vocabulary, a missing chat template. */
    public static final int INVALID_ARGUMENT = -1;
    /** The model could not be loaded (missing, unreadable, corrupt, unsupported). */
    public static final int MODEL_LOAD = -2;
    /** {@code requireNpu} was set and the NPU could not be used. */
    public static final int NPU_UNAVAILABLE = -3;
    /** The generation was cancelled; the session is as it was before it. */
    public static final int CANCELLED = -4;
    /** The conversation plus the tokens asked for do not fit the context. */
    public static final int CONTEXT_OVERFLOW = -5;
    /** The session is running a generation on another thread. */
    public static final int BUSY = -6;
    /** A bug in tandem (a caught panic, a worker that stopped); please report the message. */
    public static final int INTERNAL = -7;

    private final int status;
    private final String statusName;

    /** Made by the native code. */
    TandemException(int status, String statusName, String message) {
        super(message);
        this.status = status;
        this.statusName = statusName;
    }

    /** The status code: one of the constants of this class. */
    public int status() {
        return status;
    }

    /** The status as words ("cancelled", "context overflow", …). */
    public String statusName() {
        return statusName;
    }

    @Override
    public String toString() {
        return "TandemException(" + statusName + ", " + status + "): " + getMessage();
    }
}
