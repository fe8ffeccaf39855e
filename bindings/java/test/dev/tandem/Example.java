// The README's Java example: load a model, stream a greedy reply, print the stats.
package dev.tandem;

public final class Example {
    public static void main(String[] args) {
        Tandem.Options options = new Tandem.Options();
        options.prefill = "auto"; // the NPU when present and faster, else the CPU
        try (Tandem tandem = Tandem.open(args[0], options);
                Session session = tandem.newSession()) {
            GenerateOptions greedy = GenerateOptions.greedy(32);
            Result reply = session.generate("Once upon a time", greedy, (id, text) -> {
                System.out.print(text);
                return true; // false would stop here
            });
            System.out.println("\n" + reply.tokens.length + " tokens; stats " + reply.statsJson);
        } catch (TandemException e) {
            System.err.println("tandem failed (" + e.status() + "): " + e.getMessage());
            System.exit(1);
        }
    }
}
