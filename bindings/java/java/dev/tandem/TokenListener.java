package dev.tandem;

/**
 * Receives the pieces of a generation as they are produced. Called on the thread that called
 * {@link Session#generate}, in order, while the engine keeps generating; a slow listener delays
 * only its own turn's output, not the engine.
 */
@FunctionalInterface
public interface TokenListener {
    /**
     * One streamed piece.
     *
     * @param tokenId the generated token, or -1 for text released at the end of generation
     * @param text the text this piece completes; may be empty while a character or a stop
     *     string is still pending
     * @return {@code false} to stop generation here, keeping what was seen so far; an
     *     exception thrown here undoes the turn and is rethrown from {@code generate}
     */
    boolean onToken(int tokenId, String text);
}
