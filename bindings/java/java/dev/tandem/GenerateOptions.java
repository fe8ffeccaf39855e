package dev.tandem;

/**
 * How one {@link Session#generate} turn generates. A plain holder of public fields: set what
 * differs from the defaults. Not thread-safe itself; the session reads it when the call starts.
 */
public final class GenerateOptions {
    /** Most tokens to generate. */
    public int maxTokens = 256;
    /** Sampling temperature; 0 = greedy (always the most likely token). */
    public float temperature = 0.8f;
    /** Keep the k most likely tokens; 0 disables. */
    public int topK = 40;
    /** Keep the smallest set of tokens whose probability reaches p; 1 disables. */
    public float topP = 0.95f;
    /** Drop tokens less likely than minP times the most likely one; 0 disables. */
    public float minP = 0.05f;
    /** Seed of the sampler: the same seed, prompt and options give the same tokens. */
    public long seed;
    /**
     * Treat the prompt as the user's message and render the chat with the model's template (a
     * model without one fails with status -1); otherwise the prompt is appended as it is.
     */
    public boolean applyChatTemplate;
    /** Keep generating through end-of-sequence tokens (up to {@link #maxTokens}). */
    public boolean ignoreEos;
    /** Generation ends before any of these strings would be output; {@code null} = none. */
    public String[] stop;

    /** Options for greedy decoding of up to {@code maxTokens} tokens. */
    public static GenerateOptions greedy(int maxTokens) {
        GenerateOptions o = new GenerateOptions();
        o.maxTokens = maxTokens;
        o.temperature = 0f;
        return o;
    }
}
