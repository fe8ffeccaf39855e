package dev.tandem;

import java.io.FileInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * End-to-end test of the Java binding on a real model (run by {@code cargo xtask test}).
 *
 * <p>Arguments: model path, prompt, n, and the comma-separated token ids the Rust API generates
 * greedily for that prompt on the CPU with end-of-sequence ignored. Prints
 * {@code TandemTest: N checks passed} and exits 0, or exits 1 at the first failed check.
 */
public final class TandemTest {
    private static int checks;

    private final String model;
    private final String prompt;
    private final int n;
    private final int[] expected;

    private TandemTest(String model, String prompt, int n, int[] expected) {
        this.model = model;
        this.prompt = prompt;
        this.n = n;
        this.expected = expected;
    }

    public static void main(String[] args) {
        if (args.length != 4) {
            System.err.println(
                    "usage: TandemTest <model> <prompt> <n> <expected ids, comma-separated>");
            System.exit(2);
        }
        int[] expected = Arrays.stream(args[3].split(","))
                .map(String::trim)
                .mapToInt(Integer::parseInt)
                .toArray();
        try {
            new TandemTest(args[0], args[1], Integer.parseInt(args[2]), expected).run();
        } catch (Throwable e) {
            System.err.println("TandemTest: FAILED with an unexpected exception after " + checks
                    + " checks:");
            e.printStackTrace();
            System.exit(1);
        }
        System.out.println("TandemTest: " + checks + " checks passed");
    }

    // ---- checks -----------------------------------------------------------------------------

    private static void check(boolean ok, String what) {
        if (!ok) {
            System.err.println("TandemTest: FAILED: " + what);
            System.exit(1);
        }
        checks++;
    }

    private static void checkIds(int[] actual, int[] expected, String what) {
        check(Arrays.equals(actual, expected), what + ":\n  actual   " + Arrays.toString(actual)
                + "\n  expected " + Arrays.toString(expected));
    }

    private static TandemException expectStatus(int status, String what, Runnable call) {
        try {
            call.run();
        } catch (TandemException e) {
            check(e.status() == status, what + ": status " + e.status() + " (" + e.getMessage()
                    + "), expected " + status);
            return e;
        }
        check(false, what + ": no TandemException (expected status " + status + ")");
        return null;
    }

    private static <T extends Throwable> T expectThrown(Class<T> type, String what, Runnable call) {
        try {
            call.run();
        } catch (Throwable e) {
            check(type.isInstance(e), what + ": threw " + e + ", expected " + type.getName());
            return type.cast(e);
        }
        check(false, what + ": nothing thrown (expected " + type.getName() + ")");
        return null;
    }

    /** An integer field of a flat JSON object (enough for the stats' top-level counts). */
    private static long jsonInt(String json, String key) {
        Matcher m = Pattern.compile("\"" + Pattern.quote(key) + "\":(-?\\d+)").matcher(json);
        check(m.find(), "stats JSON has no integer `" + key + "`: " + json);
        return Long.parseLong(m.group(1));
    }

    private GenerateOptions greedy(int maxTokens) {
        GenerateOptions g = GenerateOptions.greedy(maxTokens);
        g.ignoreEos = true;
        return g;
    }

    private static Tandem.Options cpu() {
        Tandem.Options o = new Tandem.Options();
        o.prefill = "cpu";
        return o;
    }

    /** Collects the ids and text a listener sees. */
    private static final class Collector implements TokenListener {
        final List<Integer> ids = new ArrayList<>();
        final StringBuilder text = new StringBuilder();

        @Override
        public boolean onToken(int tokenId, String piece) {
            if (tokenId >= 0) {
                ids.add(tokenId);
            }
            text.append(piece);
            return true;
        }

        int[] ids() {
            return ids.stream().mapToInt(Integer::intValue).toArray();
        }
    }

    // ---- the test ---------------------------------------------------------------------------

    private void run() throws Exception {
        check(!Tandem.version().isEmpty(), "version() is empty");
        String devices = Tandem.devicesJson();
        check(devices.startsWith("{") && devices.contains("\"cpu\""),
                "devicesJson() is not the devices document: " + devices);

        try (Tandem tandem = Tandem.open(model, cpu())) {
            System.err.println("TandemTest: a panic message is expected next");
            TandemException panic = expectStatus(TandemException.INTERNAL,
                    "a panic in native code", NativeHandle::nativePanicForTest);
            check(panic.getMessage().contains("on purpose"), "panic message: " + panic);
            check(tandem.contextLength() == 512,
                    "contextLength() " + tandem.contextLength() + ", expected 512");
            int[] promptIds = greedyTurns(tandem);
            fork(tandem);
            cancelFromAnotherThread(tandem);
            busy(tandem);
            longTurn(tandem);
            listenerStops(tandem);
            listenerThrows(tandem);
            tokenPrompt(tandem, promptIds);
            errors(tandem);
            chatTemplate(tandem);
            stopString(tandem);
            closedSession(tandem);
            closeWhileGenerating(tandem);
        }
        closedTandem();
        openFd();
    }

    /** 1 and 2: greedy output equals the Rust API's; a second turn continues the first. */
    private int[] greedyTurns(Tandem tandem) {
        try (Session s = tandem.newSession()) {
            Collector seen = new Collector();
            Result r1 = s.generate(prompt, greedy(n), seen);
            checkIds(r1.tokens, expected, "greedy tokens of the Result vs the Rust API");
            checkIds(seen.ids(), expected, "greedy tokens the listener saw vs the Rust API");
            check(seen.text.toString().equals(r1.text), "listener text `" + seen.text
                    + "` differs from the Result's `" + r1.text + "`");
            check(r1.stopReason.equals("max_tokens"), "stop reason " + r1.stopReason);
            long p1 = jsonInt(r1.statsJson, "prompt_tokens");
            check(jsonInt(r1.statsJson, "cached_tokens") == 0, "first turn has cached tokens");
            check(jsonInt(r1.statsJson, "generated_tokens") == n,
                    "stats generated_tokens: " + r1.statsJson);
            int[] after1 = s.tokens();
            check(after1.length == p1 + n, "tokens() after turn 1 holds " + after1.length
                    + ", expected " + p1 + " prompt + " + n + " generated");
            checkIds(Arrays.copyOfRange(after1, (int) p1, after1.length), expected,
                    "tokens() ends with the generated tokens");

            Result r2 = s.generate(" Then the", greedy(n), null);
            long cached = jsonInt(r2.statsJson, "cached_tokens");
            check(cached > 0, "second turn reused no cached tokens: " + r2.statsJson);
            long p2 = jsonInt(r2.statsJson, "prompt_tokens");
            int[] after2 = s.tokens();
            long want = p1 + r1.tokens.length + p2 + r2.tokens.length;
            check(after2.length == want, "tokens() after turn 2 holds " + after2.length
                    + ", expected " + p1 + " + " + r1.tokens.length + " + " + p2 + " + "
                    + r2.tokens.length + " = " + want);
            checkIds(Arrays.copyOf(after2, after1.length), after1,
                    "turn 2 keeps the tokens of turn 1");
            return Arrays.copyOf(after1, (int) p1);
        }
    }

    /** 3: a fork continues like the original would; the original is unaffected by it. */
    private void fork(Tandem tandem) {
        try (Session a = tandem.newSession()) {
            a.generate(prompt, greedy(n), null);
            int[] before = a.tokens();
            try (Session b = a.fork()) {
                checkIds(b.tokens(), before, "a fork starts with the original's tokens");
                Result rb = b.generate(" Then the", greedy(n), null);
                check(jsonInt(rb.statsJson, "cached_tokens") > 0,
                        "the fork's turn reused no cached tokens: " + rb.statsJson);
                checkIds(a.tokens(), before, "the original after its fork generated");
                Result ra = a.generate(" Then the", greedy(n), null);
                checkIds(ra.tokens, rb.tokens, "the original's turn vs the fork's same turn");
                check(ra.text.equals(rb.text), "texts differ: `" + ra.text + "` vs `"
                        + rb.text + "`");
                checkIds(b.tokens(), a.tokens(), "fork and original after the same turn");
            }
        }
    }

    /** 4: cancel() from another thread ends the turn with -4 and leaves the session as it was. */
    private void cancelFromAnotherThread(Tandem tandem) throws InterruptedException {
        try (Session s = tandem.newSession()) {
            s.generate(prompt, greedy(n), null);
            int[] before = s.tokens();
            int[] seen = {0};
            AtomicReference<Thread> canceller = new AtomicReference<>();
            TandemException e = expectStatus(TandemException.CANCELLED, "cancel from a thread",
                    () -> s.generate(" Then the", greedy(400), (id, text) -> {
                        if (id >= 0 && seen[0]++ == 0) {
                            Thread t = new Thread(s::cancel, "canceller");
                            canceller.set(t);
                            t.start();
                            try {
                                // The engine keeps generating meanwhile; waiting makes sure the
                                // cancel lands while the turn runs.
                                t.join();
                            } catch (InterruptedException ie) {
                                throw new RuntimeException(ie);
                            }
                        }
                        return true;
                    }));
            check(e.statusName().equals("cancelled"), "status name " + e.statusName());
            check(canceller.get() != null && !canceller.get().isAlive(),
                    "the cancelling thread did not run");
            check(seen[0] < 400, "the cancelled turn streamed all " + seen[0] + " tokens");
            checkIds(s.tokens(), before, "tokens() after a cancelled turn");
            // Idle cancel does nothing, and is not held over for the next turn.
            s.cancel();
            Result r = s.generate(" Then the", greedy(n), null);
            check(r.tokens.length == n, "a turn after a cancel generated " + r.tokens.length);
        }
    }

    /** A second call on a session while it generates on another thread is busy (-6). */
    private void busy(Tandem tandem) throws InterruptedException {
        try (Session s = tandem.newSession()) {
            AtomicReference<Throwable> other = new AtomicReference<>();
            int[] calls = {0};
            Result r = s.generate(prompt, greedy(n), (id, text) -> {
                if (calls[0]++ == 0) {
                    Thread t = new Thread(() -> {
                        try {
                            expectStatus(TandemException.BUSY, "generate while generating",
                                    () -> s.generate("x", greedy(1), null));
                            expectStatus(TandemException.BUSY, "tokens() while generating",
                                    s::tokens);
                            expectStatus(TandemException.BUSY, "fork() while generating",
                                    s::fork);
                        } catch (Throwable e) {
                            other.set(e);
                        }
                    });
                    t.start();
                    try {
                        t.join();
                    } catch (InterruptedException ie) {
                        throw new RuntimeException(ie);
                    }
                }
                return true;
            });
            check(other.get() == null, "the other thread failed: " + other.get());
            checkIds(r.tokens, expected, "the turn that was busy meanwhile");
        }
    }

    /** A turn filling the whole context streams every token (one JNI call each). */
    private void longTurn(Tandem tandem) {
        try (Session s = tandem.newSession()) {
            s.generate(prompt, greedy(1), null);
            int room = tandem.contextLength() - s.tokens().length + 1;
            Collector seen = new Collector();
            Result r = s.generate(" and", greedy(room - 1), seen);
            check(r.tokens.length == room - 1 && seen.ids.size() == room - 1,
                    "a " + (room - 1) + "-token turn gave " + r.tokens.length + " tokens, "
                            + seen.ids.size() + " to the listener");
            check(seen.text.toString().equals(r.text), "the long turn's text");
        }
    }

    /** 5: a listener returning false after 3 tokens stops the turn there, keeping them. */
    private void listenerStops(Tandem tandem) {
        try (Session s = tandem.newSession()) {
            int[] seen = {0};
            Result r = s.generate(prompt, greedy(n), (id, text) -> id < 0 || ++seen[0] < 3);
            checkIds(r.tokens, Arrays.copyOf(expected, 3), "tokens of a turn stopped at 3");
            check(r.stopReason.equals("stopped"), "stop reason " + r.stopReason);
            long p = jsonInt(r.statsJson, "prompt_tokens");
            check(jsonInt(r.statsJson, "generated_tokens") == 3, "stats: " + r.statsJson);
            check(s.tokens().length == p + 3,
                    "tokens() after the stop holds " + s.tokens().length + ", expected " + p
                            + " + 3");
        }
    }

    /** A listener's exception undoes the turn and reaches the caller as it was thrown. */
    @SuppressWarnings("try") // closes the session from its own listener on purpose
    private void listenerThrows(Tandem tandem) {
        try (Session s = tandem.newSession()) {
            s.generate(prompt, greedy(n), null);
            int before = s.tokens().length;
            RuntimeException boom = new RuntimeException("boom from the listener");
            int[] seen = {0};
            RuntimeException caught = expectThrown(RuntimeException.class, "listener throws",
                    () -> s.generate(" Then the", greedy(n), (id, text) -> {
                        if (++seen[0] == 2) {
                            throw boom;
                        }
                        return true;
                    }));
            check(caught == boom, "generate threw " + caught + ", not the listener's exception");
            check(seen[0] == 2, "the listener was called " + seen[0] + " times after throwing");
            // The turn is undone: the conversation is as it was before it.
            check(s.tokens().length == before,
                    "tokens() after the listener threw: " + s.tokens().length + ", had " + before);
            IllegalStateException ise = expectThrown(IllegalStateException.class,
                    "close() from the session's own listener",
                    () -> s.generate(" and", greedy(n), (id, text) -> {
                        s.close();
                        return true;
                    }));
            check(ise.getMessage().contains("listener"), "message: " + ise.getMessage());
            Result r = s.generate(" and", greedy(2), null);
            check(r.tokens.length == 2, "the session after its listener threw");
        }
    }

    /** generateTokens with the prompt's ids (BOS included) gives the same tokens. */
    private void tokenPrompt(Tandem tandem, int[] promptIds) {
        try (Session s = tandem.newSession()) {
            Result r = s.generateTokens(promptIds, greedy(n), null);
            checkIds(r.tokens, expected, "generateTokens with the prompt's ids");
        }
    }

    /** 6: errors are TandemExceptions with the library's status and message. */
    private void errors(Tandem tandem) {
        String missing = "/nonexistent/tandem-test/missing-model.gguf";
        TandemException e = expectStatus(TandemException.MODEL_LOAD, "open a missing file",
                () -> Tandem.open(missing, cpu()).close());
        check(e.getMessage().contains(missing), "message does not name the file: " + e);

        Tandem.Options gpu = cpu();
        gpu.prefill = "gpu";
        e = expectStatus(TandemException.INVALID_ARGUMENT, "prefill gpu",
                () -> Tandem.open(model, gpu).close());
        check(e.getMessage().contains("gpu"), "message does not name the policy: " + e);
        Tandem.Options weights = cpu();
        weights.cpuWeights = "q9_9";
        expectStatus(TandemException.INVALID_ARGUMENT, "cpuWeights q9_9",
                () -> Tandem.open(model, weights).close());
        Tandem.Options threads = cpu();
        threads.threads = -1;
        e = expectStatus(TandemException.INVALID_ARGUMENT, "threads -1",
                () -> Tandem.open(model, threads).close());
        check(e.getMessage().contains("threads"), "message: " + e);
        Tandem.Options chunks = cpu();
        chunks.chunkSizes = new int[] {64, 0};
        expectStatus(TandemException.INVALID_ARGUMENT, "chunk size 0",
                () -> Tandem.open(model, chunks).close());
        Tandem.Options npuOnCpu = cpu();
        npuOnCpu.requireNpu = true;
        expectStatus(TandemException.INVALID_ARGUMENT, "requireNpu with prefill cpu",
                () -> Tandem.open(model, npuOnCpu).close());

        try (Session s = tandem.newSession()) {
            s.generate(prompt, greedy(4), null);
            int[] before = s.tokens();
            StringBuilder longPrompt = new StringBuilder();
            for (int i = 0; i < 300; i++) {
                longPrompt.append("once upon a time ");
            }
            e = expectStatus(TandemException.CONTEXT_OVERFLOW, "a prompt longer than the context",
                    () -> s.generate(longPrompt.toString(), greedy(4), null));
            check(e.getMessage().contains("512"), "message does not name the context: " + e);
            expectStatus(TandemException.CONTEXT_OVERFLOW, "maxTokens beyond the context",
                    () -> s.generate(" and", greedy(600), null));
            checkIds(s.tokens(), before, "tokens() after refused turns");

            GenerateOptions bad = greedy(4);
            bad.temperature = Float.NaN;
            expectStatus(TandemException.INVALID_ARGUMENT, "temperature NaN",
                    () -> s.generate(" and", bad, null));
            GenerateOptions negative = greedy(-1);
            expectStatus(TandemException.INVALID_ARGUMENT, "maxTokens -1",
                    () -> s.generate(" and", negative, null));
            e = expectStatus(TandemException.INVALID_ARGUMENT, "token id -5",
                    () -> s.generateTokens(new int[] {1, -5}, greedy(4), null));
            check(e.getMessage().contains("-5"), "message: " + e);
            expectStatus(TandemException.INVALID_ARGUMENT, "token id outside the vocabulary",
                    () -> s.generateTokens(new int[] {1_000_000_000}, greedy(4), null));
            GenerateOptions nullStop = greedy(4);
            nullStop.stop = new String[] {"x", null};
            expectStatus(TandemException.INVALID_ARGUMENT, "a null stop string",
                    () -> s.generate(" and", nullStop, null));
            checkIds(s.tokens(), before, "tokens() after refused turns");
            expectThrown(NullPointerException.class, "null prompt",
                    () -> s.generate(null, greedy(4), null));
        }
    }

    /** The default model has a chat template: chat turns run, and the second one reuses the cache. */
    private void chatTemplate(Tandem tandem) {
        try (Session s = tandem.newSession()) {
            GenerateOptions chat = greedy(8);
            chat.applyChatTemplate = true;
            Result r1 = s.generate(prompt, chat, null);
            check(r1.tokens.length == 8, "chat turn generated " + r1.tokens.length);
            Result r2 = s.generate("And then?", chat, null);
            check(r2.tokens.length == 8, "second chat turn generated " + r2.tokens.length);
            check(jsonInt(r2.statsJson, "cached_tokens") > 0,
                    "second chat turn reused nothing: " + r2.statsJson);
        }
    }

    /** A stop string ends the turn before it would be output. */
    private void stopString(Tandem tandem) {
        String plain;
        try (Session s = tandem.newSession()) {
            plain = s.generate(prompt, greedy(n), null).text;
        }
        int space = plain.indexOf(' ');
        check(space >= 0, "the greedy text has no space to stop at: `" + plain + "`");
        try (Session s = tandem.newSession()) {
            GenerateOptions stop = greedy(n);
            stop.stop = new String[] {" "};
            Result r = s.generate(prompt, stop, null);
            check(r.stopReason.equals("stop_string"), "stop reason " + r.stopReason);
            check(r.text.equals(plain.substring(0, space)), "text before the stop string: `"
                    + r.text + "`, expected `" + plain.substring(0, space) + "`");
        }
    }

    /** Closed sessions refuse calls; closing twice is harmless. */
    private void closedSession(Tandem tandem) {
        Session s = tandem.newSession();
        s.close();
        s.close();
        s.cancel();
        IllegalStateException e = expectThrown(IllegalStateException.class, "closed session",
                () -> s.generate(prompt, greedy(4), null));
        check(e.getMessage().contains("closed"), "message: " + e.getMessage());
        expectThrown(IllegalStateException.class, "tokens() of a closed session", s::tokens);
        expectThrown(IllegalStateException.class, "fork() of a closed session", s::fork);
    }

    /** close() from another thread cancels the running turn and waits for it. */
    private void closeWhileGenerating(Tandem tandem) throws InterruptedException {
        Session s = tandem.newSession();
        CountDownLatch started = new CountDownLatch(1);
        Thread closer = new Thread(() -> {
            try {
                started.await();
            } catch (InterruptedException e) {
                return;
            }
            s.close();
        }, "closer");
        closer.start();
        expectStatus(TandemException.CANCELLED, "close() from another thread while generating",
                () -> s.generate(prompt, greedy(400), (id, text) -> {
                    started.countDown();
                    sleep(1); // so the turn is still running when close() cancels it
                    return true;
                }));
        closer.join();
        expectThrown(IllegalStateException.class, "tokens() after close() on another thread",
                s::tokens);
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            throw new RuntimeException(e);
        }
    }

    /** A session outliving its Tandem fails cleanly. */
    private void closedTandem() {
        Tandem t = Tandem.open(model, cpu());
        Session s = t.newSession();
        s.generate(prompt, greedy(4), null);
        t.close();
        t.close();
        expectThrown(IllegalStateException.class, "newSession() of a closed Tandem",
                t::newSession);
        // Closing the Tandem while one of its sessions generates lets that turn finish.
        Tandem t2 = Tandem.open(model, cpu());
        Session s2 = t2.newSession();
        int[] calls = {0};
        Result r = s2.generate(prompt, greedy(n), (id, text) -> {
            if (calls[0]++ == 0) {
                t2.close();
            }
            return true;
        });
        checkIds(r.tokens, expected, "a turn during which its Tandem was closed");
        expectStatus(TandemException.INVALID_ARGUMENT, "the next turn after the Tandem closed",
                () -> s2.generate(" and", greedy(4), null));
        s2.close();

        TandemException e = expectStatus(TandemException.INVALID_ARGUMENT,
                "generate after the Tandem closed", () -> s.generate(" and", greedy(4), null));
        check(e.getMessage().contains("closed"), "message: " + e);
        expectStatus(TandemException.INVALID_ARGUMENT, "fork after the Tandem closed", s::fork);
        check(s.tokens().length > 4, "tokens() after the Tandem closed");
        s.close();
    }

    /** openFd: the model from a descriptor, whole and at an offset inside a larger file. */
    private void openFd() throws IOException {
        Path modelPath = Paths.get(model).toRealPath();
        try (FileInputStream in = new FileInputStream(modelPath.toFile())) {
            int fd = descriptorOf(in, modelPath);
            try (Tandem t = Tandem.openFd(fd, 0, 0, cpu()); Session s = t.newSession()) {
                checkIds(s.generate(prompt, greedy(n), null).tokens, expected,
                        "greedy tokens of a model opened from a descriptor");
            }
        }
        byte[] bytes = Files.readAllBytes(modelPath);
        Path padded = Files.createTempFile("tandem-test", ".bin");
        try {
            int offset = 4096;
            try (OutputStream out = Files.newOutputStream(padded)) {
                out.write(new byte[offset]);
                out.write(bytes);
                out.write(new byte[100]);
            }
            try (FileInputStream in = new FileInputStream(padded.toFile())) {
                int fd = descriptorOf(in, padded.toRealPath());
                try (Tandem t = Tandem.openFd(fd, offset, bytes.length, cpu());
                        Session s = t.newSession()) {
                    checkIds(s.generate(prompt, greedy(n), null).tokens, expected,
                            "greedy tokens of a model at an offset of a descriptor");
                }
            }
        } finally {
            Files.deleteIfExists(padded);
        }
        expectStatus(TandemException.INVALID_ARGUMENT, "openFd(-1)",
                () -> Tandem.openFd(-1, 0, 0, cpu()).close());
        expectStatus(TandemException.INVALID_ARGUMENT, "openFd with a negative offset",
                () -> Tandem.openFd(0, -1, 0, cpu()).close());
    }

    /**
     * The descriptor number of a stream just opened on {@code file} (what Android's
     * {@code ParcelFileDescriptor.getFd()} returns), found through /proc/self/fd.
     */
    private static int descriptorOf(FileInputStream in, Path file) throws IOException {
        check(in.getFD().valid(), "the stream's descriptor is not valid");
        Set<Integer> matches = new HashSet<>();
        try (DirectoryStream<Path> fds = Files.newDirectoryStream(Paths.get("/proc/self/fd"))) {
            for (Path fd : fds) {
                try {
                    if (Files.readSymbolicLink(fd).equals(file)) {
                        matches.add(Integer.parseInt(fd.getFileName().toString()));
                    }
                } catch (IOException closedMeanwhile) {
                    // The directory stream's own descriptor, gone once listed.
                }
            }
        }
        check(!matches.isEmpty(), "no descriptor of " + file + " in /proc/self/fd");
        return matches.stream().mapToInt(Integer::intValue).max().getAsInt();
    }
}
