package dev.tandem;

import java.util.Objects;

/**
 * An open model and the engine that runs it: prefill on the NPU or the CPU, decode on the CPU.
 * Conversations run in {@link Session}s made by {@link #newSession()}.
 *
 * <p><b>Threads.</b> A {@code Tandem} may be shared by any number of threads; sessions of one
 * engine may generate at the same time on different threads.
 *
 * <p><b>Ownership.</b> A {@code Tandem} holds native memory (the mapped model, worker threads)
 * that the garbage collector does not free: call {@link #close()} (or use try-with-resources).
 * Closing it stops the engine once generations running on its sessions return; its sessions
 * must still be closed, and afterwards fail to generate or fork with a {@link TandemException}.
 *
 * <p><b>Errors.</b> Every failure of the library is a {@link TandemException} with its status
 * code; using a closed object is an {@link IllegalStateException}.
 *
 * <p>The native library is {@code libtandem_jni.so}, loaded with
 * {@code System.loadLibrary("tandem_jni")}. With R8/ProGuard keep {@code dev.tandem.**}: the
 * native code calls {@code TokenListener.onToken} and the constructors of {@link Result} and
 * {@link TandemException} by name.
 */
public final class Tandem implements AutoCloseable {
    static {
        System.loadLibrary("tandem_jni");
    }

    /**
     * Engine settings: a plain holder of public fields whose defaults work; set what differs.
     * Read once by {@link #open}/{@link #openFd}.
     */
    public static final class Options {
        /**
         * Where prompts are prefilled: {@code "auto"} (per request, whichever the measured
         * costs say is faster), {@code "npu"} (always the NPU, falling back to the CPU when it
         * cannot be used) or {@code "cpu"}. Decode always runs on the CPU. {@code null} is the
         * host's default ({@code "auto"} on Arm, {@code "cpu"} on x86, where the NPU is a
         * simulator).
         */
        public String prefill;
        /** Fail with status -3 instead of falling back to the CPU when the NPU cannot be used. */
        public boolean requireNpu;
        /** CPU threads; 0 = the physical cores. */
        public int threads;
        /** Context length in tokens; 0 = the model's (capped as {@code tandem run} caps it). */
        public int contextLength;
        /** NPU prefill chunk sizes (each one prepared graph); {@code null} = the defaults. */
        public int[] chunkSizes;
        /** Folder holding the QNN libraries; {@code null} = environment, then system path. */
        public String qnnLibDir;
        /** Folder for prepared NPU graphs; {@code null} = the default cache folder. */
        public String cacheDir;
        /**
         * How the CPU holds the weights: {@code "f32"}, {@code "f16"}, {@code "bf16"},
         * {@code "q8_0"}, {@code "q4_0"}, {@code "q4_1"}, {@code "q5_0"}, {@code "q5_1"}; {@code null} or {@code "auto"} = as stored.
         */
        public String cpuWeights;
    }

    private final NativeHandle handle;

    private Tandem(long address) {
        handle = new NativeHandle("Tandem", address);
    }

    /**
     * Loads the GGUF model (or Hugging Face folder) at {@code modelPath} and starts an engine.
     *
     * @param opts settings; {@code null} = the defaults
     * @throws TandemException status -2 if the model cannot be loaded, -1 for a bad option, -3
     *     if {@code requireNpu} is set and the NPU cannot be used
     * @throws NullPointerException if {@code modelPath} is null
     */
    public static Tandem open(String modelPath, Options opts) {
        Objects.requireNonNull(modelPath, "modelPath");
        return openImpl(modelPath, -1, 0, 0, opts);
    }

    /**
     * Loads a GGUF model from bytes {@code [offset, offset + length)} of an open file
     * descriptor ({@code length} 0 = to the end), as Android hands out assets:
     * {@code AssetFileDescriptor}'s {@code getParcelFileDescriptor().getFd()},
     * {@code getStartOffset()} and {@code getLength()}. The file is opened again, so the caller
     * keeps its descriptor and may close it once this returns. Linux and Android only.
     *
     * @throws TandemException as {@link #open}
     */
    public static Tandem openFd(int fd, long offset, long length, Options opts) {
        return openImpl(null, fd, offset, length, opts);
    }

    private static Tandem openImpl(String path, int fd, long offset, long length, Options opts) {
        Options o = opts != null ? opts : new Options();
        long address = nativeOpen(path, fd, offset, length, o.prefill, o.requireNpu, o.threads,
                o.contextLength, o.chunkSizes, o.qnnLibDir, o.cacheDir, o.cpuWeights);
        return new Tandem(address);
    }

    /**
     * A new, empty conversation on this engine. Close it when done; it may be used from any
     * thread, one generation at a time.
     */
    public Session newSession() {
        return new Session(handle.call(Tandem::nativeNewSession));
    }

    /** The context length of every session, in tokens. */
    public int contextLength() {
        return handle.call(Tandem::nativeContextLength);
    }

    /** The library's version. */
    public static String version() {
        return nativeVersion();
    }

    /**
     * The devices the library can use, as the JSON document {@code tandem devices --json}
     * prints (CPU features; each NPU delegate and whether it is available, and why not).
     */
    public static String devicesJson() {
        return nativeDevicesJson();
    }

    /**
     * Frees the engine. Waits for calls on this object in flight (not for generations of its
     * sessions, which keep the engine until they return). Closing twice does nothing.
     */
    @Override
    public void close() {
        handle.close(Tandem::nativeClose);
    }

    private static native long nativeOpen(String path, int fd, long offset, long length,
            String prefill, boolean requireNpu, int threads, int contextLength, int[] chunkSizes,
            String qnnLibDir, String cacheDir, String cpuWeights);

    private static native void nativeClose(long handle);

    private static native int nativeContextLength(long handle);

    private static native long nativeNewSession(long handle);

    private static native String nativeVersion();

    private static native String nativeDevicesJson();
}
