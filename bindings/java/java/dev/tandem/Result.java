package dev.tandem;

/** What one {@link Session#generate} turn produced. Immutable once returned. */
public final class Result {
    /** The generated token ids (not the prompt's). */
    public final int[] tokens;
    /** Their text (without a stop string that ended generation). */
    public final String text;
    /**
     * Why generation ended: {@code "eos"}, {@code "stop_string"}, {@code "max_tokens"} or
     * {@code "stopped"} (the listener returned false).
     */
    public final String stopReason;
    /**
     * The turn's statistics as JSON (the {@code stats} object of {@code tandem run --json}):
     * placement, {@code prompt_tokens}, {@code cached_tokens}, prefill chunks, timings, …
     */
    public final String statsJson;

    /** Made by the native code. */
    Result(int[] tokens, String text, String stopReason, String statsJson) {
        this.tokens = tokens;
        this.text = text;
        this.stopReason = stopReason;
        this.statsJson = statsJson;
    }
}
