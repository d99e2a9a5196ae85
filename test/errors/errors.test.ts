import { describe, expect, it } from 'vitest';
import { ERROR_CODES, SealError, isSealError, sealError } from '../../src/errors/index.js';

describe('SealError', () => {
  it('carries its stable code, retryability and cause', () => {
    const cause = new Error('disk');
    const err = sealError('ErrKEKUnavailable', 'kms at 127.0.0.1:1 did not answer', cause);
    expect(err).toBeInstanceOf(SealError);
    expect(err.code).toBe('ErrKEKUnavailable');
    expect(err.retryable).toBe(true);
    expect(err.cause).toBe(cause);
    expect(err.message.startsWith('ErrKEKUnavailable: ')).toBe(true);
    expect(isSealError(err, 'ErrKEKUnavailable')).toBe(true);
    expect(isSealError(err, 'ErrKEKMismatch')).toBe(false);
    expect(isSealError(new Error('x'))).toBe(false);
  });

  it('marks integrity failures as not retryable', () => {
    expect(ERROR_CODES.ErrEncryptedReadIntegrity.retryable).toBe(false);
    expect(sealError('ErrEnvelopeShort', 'x').retryable).toBe(false);
  });
});
