package dev.tandem;

import java.util.Objects;

/**
 * A conversation on a {@link Tandem} engine: its tokens and KV cache, kept across turns, so each
 * {@code generate} continues where the last one ended and only the new prompt is prefilled.
 *
 * <p><b>Threads.</b> A session may be used from any thread, but runs one generation at a time: a
 * second {@code generate} (or {@code fork}, {@code tokens}, {@code reset}) while one runs on
 * another thread fails with status -6 (busy). {@link #cancel()} may be called from any thread
 * at any time and never waits. Different sessions generate in parallel.
 *
 * <p><b>Ownership.</b> A session holds native memory (its KV cache) that the garbage collector
 * does not free: call {@link #close()}. It does not keep its {@code Tandem} open: once that is
 * closed, {@code generate} and {@code fork} fail with status -1 (tokens and reset still work).
 */
public final class Session implements AutoCloseable {
    private final NativeHandle handle;

    Session(long address) {
        handle = new NativeHandle("Session", address);
    }

    /**
     * Appends {@code prompt} to the conversation and generates a reply, streaming each piece to
     * {@code listener} on this thread. The tokenizer's start token is added on the first turn
     * only. With {@link GenerateOptions#applyChatTemplate} the prompt is the user's message and
     * the chat so far is rendered with the model's template.
     *
     * <p>If the listener returns {@code false}, generation ends there: the result holds the
     * tokens it saw and its stop reason is {@code "stopped"}; they stay in the conversation. If
     * the listener throws, the turn is undone (the conversation is as it was before this call)
     * and the exception is rethrown from here.
     *
     * @param opts how to generate; {@code null} = the defaults of {@link GenerateOptions}
     * @param listener called for each streamed piece; may be {@code null}
     * @throws TandemException -4 if {@link #cancel()} was called (the conversation is then as it
     *     was before this call), -5 if the conversation would not fit the context, -6 if busy,
     *     -1 for a bad option (or a model without a chat template when asked for one)
     * @throws NullPointerException if {@code prompt} is null
     */
    public Result generate(String prompt, GenerateOptions opts, TokenListener listener) {
        Objects.requireNonNull(prompt, "prompt");
        return generateImpl(prompt, null, opts, listener);
    }

    /**
     * As {@link #generate}, with the prompt given as token ids, appended as they are (no start
     * token, no chat template).
     *
     * @throws TandemException as {@link #generate}; -1 for an id outside the vocabulary
     * @throws NullPointerException if {@code ids} is null
     */
    public Result generateTokens(int[] ids, GenerateOptions opts, TokenListener listener) {
        Objects.requireNonNull(ids, "ids");
        return generateImpl(null, ids, opts, listener);
    }

    private Result generateImpl(String prompt, int[] ids, GenerateOptions opts,
            TokenListener listener) {
        GenerateOptions o = opts != null ? opts : new GenerateOptions();
        return handle.call(address -> nativeGenerate(address, prompt, ids, o.maxTokens,
                o.temperature, o.topK, o.topP, o.minP, o.seed, o.applyChatTemplate, o.ignoreEos,
                o.stop, listener));
    }

    /**
     * A new session holding a copy of this conversation (tokens, KV cache, chat messages), so
     * the two continue independently. Close it too.
     *
     * @throws TandemException -6 while this session generates; -1 once its Tandem is closed
     */
    public Session fork() {
        return new Session(handle.call(Session::nativeFork));
    }

    /**
     * Cancels the generation running on this session, from any thread, without waiting: it
     * ends with a {@link TandemException} of status -4 and the conversation is left as it was
     * before it. Does nothing when no generation runs (a cancel is not held over for the next
     * one) or the session is closed.
     */
    public void cancel() {
        handle.tryCall(Session::nativeCancel);
    }

    /** Every token of the conversation so far: prompts and replies, in order. */
    public int[] tokens() {
        return handle.call(Session::nativeTokens);
    }

    /** Forgets the conversation (tokens, KV cache, chat messages). */
    public void reset() {
        handle.call(address -> {
            nativeReset(address);
            return null;
        });
    }

    /**
     * Frees the session. A generation running on another thread is cancelled and waited for.
     * Closing twice does nothing.
     *
     * @throws IllegalStateException if called from this session's own {@link TokenListener}
     */
    @Override
    public void close() {
        handle.checkNotInCall();
        cancel();
        handle.close(Session::nativeClose);
    }

    private static native Result nativeGenerate(long handle, String prompt, int[] ids,
            int maxTokens, float temperature, int topK, float topP, float minP, long seed,
            boolean applyChatTemplate, boolean ignoreEos, String[] stop, TokenListener listener);

    private static native long nativeFork(long handle);

    private static native boolean nativeCancel(long handle);

    private static native int[] nativeTokens(long handle);

    private static native void nativeReset(long handle);

    private static native void nativeClose(long handle);
}
