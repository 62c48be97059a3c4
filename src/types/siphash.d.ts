// Types for the `siphash` package (jedisct1/siphash-js), which ships none.
declare module 'siphash' {
  /** A 128-bit key as four little-endian 32-bit words. */
  export type SipHashKey = Uint32Array | readonly number[]
  export interface SipHashResult { h: number, l: number }
  const SipHash: {
    hash(key: SipHashKey, message: Uint8Array | string): SipHashResult
    hash_hex(key: SipHashKey, message: Uint8Array | string): string
    hash_uint(key: SipHashKey, message: Uint8Array | string): number
    string16_to_key(key: string): Uint32Array
    string_to_u8(text: string): Uint8Array
  }
  export default SipHash
}
