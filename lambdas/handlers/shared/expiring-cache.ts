// What a warm function keeps between invocations (a TLS secret, a kubeconfig), kept only for a while: a
// secret rotated after a certificate or token was renewed is read again within minutes, not only when
// Lambda recycles the function.

/** How long a warm function trusts what it read from Secrets Manager or EKS. */
export const secretCacheMs = 5 * 60 * 1000;

/** Promises kept per key for `ttlMs`, forgotten at once when they reject. */
export class ExpiringCache<T> {
  private readonly entries = new Map<string, { value: Promise<T>; expiresAt: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: string, load: () => Promise<T>): Promise<T> {
    const entry = this.entries.get(key);
    if (entry && entry.expiresAt > this.now()) return entry.value;
    const value = load();
    this.entries.set(key, { value, expiresAt: this.now() + this.ttlMs });
    value.catch(() => {
      if (this.entries.get(key)?.value === value) this.entries.delete(key);
    });
    return value;
  }
}
