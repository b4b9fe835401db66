// Response shapes of the Ethereum execution-apis OpenRPC specification
// (github.com/ethereum/execution-apis, src/schemas/{base-types,block,transaction,receipt,
// withdrawal}.yaml), encoded as small checks: required fields, the pattern of every field
// (hex quantities without leading zeros, fixed-length hashes), null rules, and no unknown
// fields where the spec says `additionalProperties: false`.
//
// A type is a pattern name ('uint', 'hash32', ...), 'boolean', 'ratio' (a JSON number in
// [0, 1]), or one of
//   { nullable: T }  { array: T }  { object: Schema }  { oneOf: [T...] }  { exact: 'value' }
// and a Schema is { required: [names], props: { name: T }, closed: bool }.

export const patterns = {
  uint: /^0x(0|[1-9a-f][0-9a-f]*)$/,
  uint64: /^0x(0|[1-9a-f][0-9a-f]{0,15})$/,
  uint256: /^0x(0|[1-9a-f][0-9a-f]{0,63})$/,
  byte: /^0x[0-9a-f]{1,2}$/,
  bytes: /^0x[0-9a-f]*$/,
  bytes8: /^0x[0-9a-f]{16}$/,
  bytes32: /^0x[0-9a-f]{64}$/,
  bytes256: /^0x[0-9a-f]{512}$/,
  hash32: /^0x[0-9a-f]{64}$/,
  address: /^0x[0-9a-fA-F]{40}$/,
};

const nullable = (t) => ({ nullable: t });
const array = (t) => ({ array: t });
const object = (s) => ({ object: s });

export const Withdrawal = {
  required: ['index', 'validatorIndex', 'address', 'amount'],
  props: { index: 'uint64', validatorIndex: 'uint64', address: 'address', amount: 'uint256' },
  closed: true,
};

export const AccessList = array(
  object({ required: ['address', 'storageKeys'], props: { address: 'address', storageKeys: array('hash32') }, closed: true }),
);

const AuthorizationList = array(
  object({
    required: ['chainId', 'nonce', 'address', 'yParity', 'r', 's'],
    props: { chainId: 'uint', nonce: 'uint', address: 'address', yParity: 'byte', r: 'uint256', s: 'uint256' },
  }),
);

// Fields every signed transaction type shares (transaction.yaml, *Unsigned + *Signed).
const common = {
  nonce: 'uint',
  to: nullable('address'),
  gas: 'uint',
  value: 'uint',
  input: 'bytes',
  gasPrice: 'uint',
  chainId: 'uint',
  r: 'uint',
  s: 'uint',
};

/** Signed transaction schemas by type (TransactionLegacySigned ... Transaction7702Signed). */
export const SignedTx = {
  '0x0': {
    required: ['type', 'nonce', 'gas', 'value', 'input', 'gasPrice', 'v', 'r', 's'],
    props: { ...common, type: { exact: '0x0' }, v: 'uint' },
  },
  '0x1': {
    required: ['type', 'nonce', 'gas', 'value', 'input', 'gasPrice', 'chainId', 'accessList', 'yParity', 'r', 's'],
    props: { ...common, type: { exact: '0x1' }, accessList: AccessList, yParity: 'byte', v: 'byte' },
  },
  '0x2': {
    required: [
      'type', 'nonce', 'gas', 'value', 'input', 'maxFeePerGas', 'maxPriorityFeePerGas', 'gasPrice', 'chainId',
      'accessList', 'yParity', 'r', 's',
    ],
    props: {
      ...common,
      type: { exact: '0x2' },
      maxFeePerGas: 'uint',
      maxPriorityFeePerGas: 'uint',
      accessList: AccessList,
      yParity: 'byte',
      v: 'byte',
    },
  },
  '0x4': {
    required: [
      'type', 'nonce', 'to', 'gas', 'value', 'input', 'maxPriorityFeePerGas', 'maxFeePerGas', 'accessList', 'chainId',
      'authorizationList', 'yParity', 'r', 's',
    ],
    props: {
      ...common,
      to: 'address',
      type: { exact: '0x4' },
      maxFeePerGas: 'uint',
      maxPriorityFeePerGas: 'uint',
      accessList: AccessList,
      authorizationList: AuthorizationList,
      yParity: 'byte',
      v: 'byte',
    },
  },
};

/** TransactionInfo: a signed transaction plus where it was included. */
export function transactionInfo(type) {
  const signed = SignedTx[type];
  if (!signed) throw new Error(`no schema for transaction type ${type}`);
  return {
    required: [...signed.required, 'blockHash', 'blockNumber', 'blockTimestamp', 'from', 'hash', 'transactionIndex'],
    props: {
      ...signed.props,
      blockHash: 'hash32',
      blockNumber: 'uint',
      blockTimestamp: 'uint',
      from: 'address',
      hash: 'hash32',
      transactionIndex: 'uint',
    },
  };
}

/** A transaction still in the pool: as geth answers, the block fields are present and null. */
export function pendingTransaction(type) {
  const signed = SignedTx[type];
  return {
    required: [...signed.required, 'blockHash', 'blockNumber', 'transactionIndex', 'from', 'hash'],
    props: {
      ...signed.props,
      blockHash: { exact: null },
      blockNumber: { exact: null },
      transactionIndex: { exact: null },
      from: 'address',
      hash: 'hash32',
    },
  };
}

/**
 * Log (receipt.yaml). The spec requires only transactionHash; a mined log carries every field
 * (clients read them all), so all but blockTimestamp are required here.
 */
export const Log = {
  required: [
    'removed', 'logIndex', 'transactionIndex', 'transactionHash', 'blockHash', 'blockNumber', 'address', 'data', 'topics',
  ],
  props: {
    removed: 'boolean',
    logIndex: 'uint',
    transactionIndex: 'uint',
    transactionHash: 'hash32',
    blockHash: 'hash32',
    blockNumber: 'uint',
    blockTimestamp: 'uint',
    address: 'address',
    data: 'bytes',
    topics: array('bytes32'),
  },
  closed: true,
};

/** ReceiptInfo (receipt.yaml); `status` is required after Byzantium, so always here. */
export const Receipt = {
  required: [
    'blockHash', 'blockNumber', 'from', 'cumulativeGasUsed', 'gasUsed', 'logs', 'logsBloom', 'transactionHash',
    'transactionIndex', 'effectiveGasPrice', 'to', 'contractAddress', 'status', 'type',
  ],
  props: {
    type: 'byte',
    transactionHash: 'hash32',
    transactionIndex: 'uint',
    blockHash: 'hash32',
    blockNumber: 'uint',
    from: 'address',
    to: nullable('address'),
    cumulativeGasUsed: 'uint',
    gasUsed: 'uint',
    blobGasUsed: 'uint',
    contractAddress: nullable('address'),
    logs: array(object(Log)),
    logsBloom: 'bytes256',
    root: 'hash32',
    status: 'uint',
    effectiveGasPrice: 'uint',
    blobGasPrice: 'uint',
  },
  closed: true,
};

/**
 * Block (block.yaml). `hydrated` selects full transaction objects over hashes. baseFeePerGas
 * and totalDifficulty are required here because the node promises them (issue 3 item 7).
 */
export function block(hydrated) {
  return {
    required: [
      'hash', 'parentHash', 'sha3Uncles', 'miner', 'stateRoot', 'transactionsRoot', 'receiptsRoot', 'logsBloom',
      'number', 'gasLimit', 'gasUsed', 'timestamp', 'extraData', 'mixHash', 'nonce', 'size', 'transactions',
      'uncles', 'baseFeePerGas', 'totalDifficulty', 'difficulty',
    ],
    props: {
      hash: 'hash32',
      parentHash: 'hash32',
      sha3Uncles: 'hash32',
      miner: 'address',
      stateRoot: 'hash32',
      transactionsRoot: 'hash32',
      receiptsRoot: 'hash32',
      logsBloom: 'bytes256',
      difficulty: 'uint',
      totalDifficulty: 'uint',
      number: 'uint',
      gasLimit: 'uint',
      gasUsed: 'uint',
      timestamp: 'uint',
      extraData: 'bytes',
      mixHash: 'hash32',
      nonce: 'bytes8',
      baseFeePerGas: 'uint',
      withdrawalsRoot: 'hash32',
      blobGasUsed: 'uint',
      excessBlobGas: 'uint',
      parentBeaconBlockRoot: 'hash32',
      requestsHash: 'hash32',
      size: 'uint',
      transactions: hydrated ? array({ txInfo: true }) : array('hash32'),
      withdrawals: array(object(Withdrawal)),
      uncles: array('hash32'),
    },
  };
}

/** eth_feeHistory's result (eth/fee_market.yaml). */
export const FeeHistory = {
  required: ['oldestBlock', 'baseFeePerGas', 'gasUsedRatio'],
  props: {
    oldestBlock: 'uint',
    baseFeePerGas: array('uint'),
    baseFeePerBlobGas: array('uint'),
    gasUsedRatio: array('ratio'),
    blobGasUsedRatio: array('ratio'),
    reward: array(array('uint')),
  },
  closed: true,
};

/** Problems of `value` against type `t` at `path` (empty when it conforms). */
export function check(value, t, path = '$') {
  const errs = [];
  const add = (m) => errs.push(`${path}: ${m} (got ${JSON.stringify(value)})`);
  if (typeof t === 'string') {
    if (t === 'boolean') {
      if (typeof value !== 'boolean') add('expected a boolean');
    } else if (t === 'ratio') {
      if (typeof value !== 'number' || value < 0 || value > 1) add('expected a number from 0 to 1');
    } else {
      const re = patterns[t];
      if (!re) throw new Error(`unknown pattern ${t}`);
      if (typeof value !== 'string' || !re.test(value)) add(`expected ${t} ${re}`);
    }
  } else if ('exact' in t) {
    if (value !== t.exact) add(`expected ${JSON.stringify(t.exact)}`);
  } else if ('nullable' in t) {
    if (value !== null) errs.push(...check(value, t.nullable, path));
  } else if ('array' in t) {
    if (!Array.isArray(value)) add('expected an array');
    else value.forEach((v, i) => errs.push(...check(v, t.array, `${path}[${i}]`)));
  } else if ('oneOf' in t) {
    const results = t.oneOf.map((o) => check(value, o, path));
    if (!results.some((r) => r.length === 0)) add(`matches none of: ${results.map((r) => r.join('; ')).join(' | ')}`);
  } else if ('txInfo' in t) {
    if (value === null || typeof value !== 'object') add('expected a transaction object');
    else errs.push(...check(value, object(transactionInfo(value.type)), path));
  } else if ('object' in t) {
    const s = t.object;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      add('expected an object');
    } else {
      for (const name of s.required ?? []) {
        if (!(name in value)) errs.push(`${path}.${name}: required field missing`);
      }
      for (const [name, v] of Object.entries(value)) {
        if (name in s.props) errs.push(...check(v, s.props[name], `${path}.${name}`));
        else if (s.closed) errs.push(`${path}.${name}: field not in the spec`);
      }
    }
  } else {
    throw new Error(`bad type ${JSON.stringify(t)}`);
  }
  return errs;
}

/** Throws with every problem found when `value` does not conform to `t`. */
export function assertShape(value, t, what) {
  const errs = check(value, typeof t === 'object' && 'required' in t ? object(t) : t);
  if (errs.length) throw new Error(`${what} does not match the execution-apis schema:\n  ${errs.join('\n  ')}`);
}
