package dev.tandem;

import java.util.concurrent.locks.Lock;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.LongConsumer;
import java.util.function.LongFunction;

/**
 * The native object behind a {@link Tandem} or {@link Session}: its address and the lock that
 * keeps it valid while native code uses it.
 *
 * <p>Every native call runs under the read lock (many at once), so {@link #close} — which takes
 * the write lock, zeroes the address and frees the object exactly once — waits until no call is
 * using it. A closed handle refuses calls with {@link IllegalStateException}.
 */
final class NativeHandle {
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private final String owner;
    /** The address; 0 once closed. Guarded by {@link #lock}. */
    private long address;

    NativeHandle(String owner, long address) {
        this.owner = owner;
        this.address = address;
    }

    /** Runs {@code call} with the address, which stays valid until it returns. */
    <T> T call(LongFunction<T> call) {
        Lock read = lock.readLock();
        read.lock();
        try {
            if (address == 0) {
                throw new IllegalStateException("this " + owner + " is closed");
            }
            return call.apply(address);
        } finally {
            read.unlock();
        }
    }

    /**
     * Runs {@code call} with the address unless the handle is closed or being closed; never
     * waits for the write lock.
     */
    void tryCall(LongConsumer call) {
        Lock read = lock.readLock();
        // tryLock takes the read lock even when a writer is queued, so this does not wait for a
        // close() that is itself waiting for a running call.
        if (!read.tryLock()) {
            return;
        }
        try {
            if (address != 0) {
                call.accept(address);
            }
        } finally {
            read.unlock();
        }
    }

    /**
     * Refuses a close from inside a call on this object (a listener), which would wait for
     * itself.
     */
    void checkNotInCall() {
        if (lock.getReadHoldCount() > 0) {
            throw new IllegalStateException(
                    owner + ".close() called from inside a call on it (a TokenListener?); "
                            + "return false from the listener to stop instead");
        }
    }

    /** Frees the native object with {@code free}, once; later calls do nothing. */
    void close(LongConsumer free) {
        checkNotInCall();
        Lock write = lock.writeLock();
        write.lock();
        try {
            if (address != 0) {
                long a = address;
                address = 0;
                free.accept(a);
            }
        } finally {
            write.unlock();
        }
    }

    /**
     * Panics in the native library, for the test that a panic arrives as a
     * {@link TandemException} with status {@link TandemException#INTERNAL}.
     */
    static native void nativePanicForTest();
}
