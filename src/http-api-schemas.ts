// JSON schemas of the HTTP API (option `api`): every request is validated
// and every answer serialized with them.

/** Non-empty ASCII, as `app.mles.publish` accepts. */
const channelName = { type: 'string', minLength: 1, pattern: '^[\\x00-\\x7f]+$' } as const

const error = {
  type: 'object',
  required: ['statusCode', 'error', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string' },
    error: { type: 'string' },
    message: { type: 'string' }
  }
} as const

const errors = { '4xx': error, '5xx': error } as const

const channelParams = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: { name: channelName }
} as const

export interface PublishBody {
  channel: string
  data: string
  binary?: boolean
}

export interface ChannelParams {
  name: string
}

export const publishSchema = {
  body: {
    type: 'object',
    required: ['channel', 'data'],
    additionalProperties: false,
    properties: {
      channel: channelName,
      data: { type: 'string' },
      binary: { type: 'boolean' }
    }
  },
  response: {
    200: { type: 'object', required: ['ok'], properties: { ok: { type: 'boolean' } } },
    ...errors
  }
} as const

export const channelsSchema = {
  response: {
    200: {
      type: 'object',
      required: ['channels'],
      properties: {
        channels: {
          type: 'array',
          items: {
            type: 'object',
            required: ['name', 'members', 'historySize', 'historyBytes'],
            properties: {
              name: { type: 'string' },
              members: { type: 'integer' },
              historySize: { type: 'integer' },
              historyBytes: { type: 'integer' }
            }
          }
        }
      }
    },
    ...errors
  }
} as const

export const historySchema = {
  params: channelParams,
  response: {
    200: {
      type: 'object',
      required: ['frames'],
      properties: {
        frames: {
          type: 'array',
          items: {
            type: 'object',
            required: ['data', 'binary'],
            properties: { data: { type: 'string' }, binary: { type: 'boolean' } }
          }
        }
      }
    },
    ...errors
  }
} as const

export const membersSchema = {
  params: channelParams,
  response: {
    200: {
      type: 'object',
      required: ['members'],
      properties: { members: { type: 'array', items: { type: 'string' } } }
    },
    ...errors
  }
} as const
