// A local Wechaty puppet service for gatepass's WeChat tests.
//
// npm `wechaty-puppet-service`'s PuppetServer (the gRPC protocol every maintained puppet
// speaks, the WeCom-based ones included) in front of `wechaty-puppet-mock`, seeded with a bot
// account, contacts and rooms, plus a small HTTP control channel through which a test plays
// the people around the bot: a contact writes to the bot, an intruder joins a room, a room
// fills up; and reads what the bot did: the texts and images it sent, room member lists.
//
//   node puppet_server.mjs --port 8788 --token insecure_<uuid> --control-port 8789 \
//        --seed seed.json          (or `--seed -` to read it from stdin, or `--seed '{...}'`)
//
// Seed: {"bot": {"id", "name"}, "contacts": [{"id", "name"}],
//        "rooms": [{"id" (must contain "@", as WeChat room ids do), "topic", "ownerId",
//                   "adminIdList", "memberIdList", "full"}]}
// When both servers listen, one line `READY {"port":…,"controlPort":…}` goes to stdout.
//
// TLS is off (WECHATY_PUPPET_SERVICE_NO_TLS_INSECURE_SERVER=true, set below when unset):
// python-wechaty opens a plain HTTP/2 channel and sends its token as the `:authority`
// header, which PuppetServer's auth reads when there is no `authorization` metadata.
// A token `insecure_<uuid>` with an explicit endpoint never involves the discovery service.

import http from 'node:http'
import { readFileSync } from 'node:fs'

import * as PUPPET from 'wechaty-puppet'
import { PuppetMock, mock } from 'wechaty-puppet-mock'
import { PuppetServer } from 'wechaty-puppet-service'

process.env.WECHATY_PUPPET_SERVICE_NO_TLS_INSECURE_SERVER ??= 'true'
// The mock and the service log at `info` through brolog; tests read only our own lines.
process.env.WECHATY_LOG ??= 'warn'
PUPPET.log.level(process.env.WECHATY_LOG)

// Real WeChat asks for an invitation instead of a direct add above this many members.
const DIRECT_ADD_LIMIT = 40

function parseArgs (argv) {
  const args = {}
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]
    const value = argv[i + 1]
    if (!key.startsWith('--') || value === undefined) {
      throw new Error(`usage: --port N --token T --control-port M --seed FILE|- (bad: ${key})`)
    }
    args[key.slice(2)] = value
  }
  for (const required of ['port', 'token', 'control-port', 'seed']) {
    if (!(required in args)) throw new Error(`missing --${required}`)
  }
  return args
}

function readSeed (where) {
  // `-`: stdin; a value starting with `{`: the JSON itself; anything else: a file name.
  const text = where === '-'
    ? readFileSync(0, 'utf8')
    : where.trimStart().startsWith('{') ? where : readFileSync(where, 'utf8')
  const seed = JSON.parse(text)
  if (!seed.bot?.id) throw new Error('seed: bot.id is required')
  for (const room of seed.rooms ?? []) {
    // PuppetMock tells a room from a contact by the "@" in its id (as WeChat's "…@chatroom").
    if (!room.id?.includes('@')) throw new Error(`seed: room id ${room.id} must contain "@"`)
  }
  return seed
}

const args = parseArgs(process.argv.slice(2))
const seed = readSeed(args.seed)

const mocker = new mock.Mocker()
const contactPayload = (c) => ({
  id: c.id,
  name: c.name ?? c.id,
  type: PUPPET.types.Contact.Individual,
  gender: PUPPET.types.ContactGender.Unknown,
  friend: c.friend ?? true,
  phone: [],
  avatar: '',
})
const bot = mocker.createContact(contactPayload(seed.bot))
for (const c of seed.contacts ?? []) mocker.createContact(contactPayload(c))

// Rooms marked full refuse a direct add; the set lives here, not in the mock's payload.
const fullRooms = new Set()
for (const r of seed.rooms ?? []) {
  mocker.createRoom({
    id: r.id,
    topic: r.topic ?? r.id,
    ownerId: r.ownerId ?? bot.id,
    adminIdList: r.adminIdList ?? [],
    memberIdList: [...(r.memberIdList ?? [bot.id])],
    avatar: '',
  })
  if (r.full) fullRooms.add(r.id)
}

// Logs the bot in each time the puppet starts: a python-wechaty client stops and starts the
// puppet when it connects, and logs in again after a reconnect.
mocker.use((m) => {
  if (!puppet.isLoggedIn) m.login(bot) // (POST /login may have logged it in already)
  return () => {}
})

const puppet = new PuppetMock({ mocker })

// Every message the bot sends, in order, for the control channel's /sent.
const sent = []

function roomOf (roomId) {
  try {
    return mocker.RoomMock.load(roomId)
  } catch {
    throw new Error(`no such room: ${roomId}`)
  }
}

function contactOf (contactId) {
  try {
    return mocker.ContactMock.load(contactId)
  } catch {
    throw new Error(`no such contact: ${contactId}`)
  }
}

// The puppet (service side) caches room payloads and member lists: forget them when the
// list changes, so the next roomPayload / roomMemberList over gRPC reads the new one.
function forgetRoom (roomId) {
  puppet.cache.room.delete(roomId)
  puppet.cache.roomMember.delete(roomId)
}

function isFull (roomId) {
  return fullRooms.has(roomId) || roomOf(roomId).payload.memberIdList.length >= DIRECT_ADD_LIMIT
}

// PuppetMock's roomAdd/roomDel are no-ops: make them change the room and emit the events a
// real puppet emits, and refuse a direct add where real WeChat does (the WeCom puppets fail
// the call; the bot then has to send an invitation).
puppet.roomAdd = async (roomId, contactId) => {
  const room = roomOf(roomId)
  contactOf(contactId)
  if (isFull(roomId)) {
    throw new Error(
      `roomAdd(${roomId}, ${contactId}) refused: the room needs an invitation `
      + `(over ${DIRECT_ADD_LIMIT} members or invite confirmation on)`,
    )
  }
  if (room.payload.memberIdList.includes(contactId)) return
  room.payload.memberIdList.push(contactId)
  forgetRoom(roomId)
  puppet.emit('room-join', {
    inviteeIdList: [contactId],
    inviterId: puppet.currentUserId,
    roomId,
    timestamp: Date.now(),
  })
}

puppet.roomDel = async (roomId, contactId) => {
  const room = roomOf(roomId)
  const members = room.payload.memberIdList
  const index = members.indexOf(contactId)
  if (index < 0) throw new Error(`roomDel(${roomId}, ${contactId}): not a member`)
  members.splice(index, 1)
  forgetRoom(roomId)
  puppet.emit('room-leave', {
    removeeIdList: [contactId],
    removerId: puppet.currentUserId,
    roomId,
    timestamp: Date.now(),
  })
}

// A room's join code, as WeChat's room QR codes carry one (https://weixin.qq.com/g/...): the
// bot sends it as an image to a buyer it cannot add directly; `POST /room/scan` plays that
// buyer scanning it. (The mock's own answer is a fixed placeholder string.)
const joinCode = (roomId) => `https://weixin.qq.com/g/${Buffer.from(roomId).toString('base64url')}`
puppet.roomQRCode = async (roomId) => {
  roomOf(roomId)
  return joinCode(roomId)
}

// A contact joins by the room's join code. WeChat shows the code's sharer as the inviter:
// the bot, which sent it. Scanning works on a room that refuses a direct add (that is what
// the code is for); with invite confirmation on, WeChat would first ask the owner.
function roomScan (roomId, contactId, code) {
  const room = roomOf(roomId)
  contactOf(contactId)
  if (code != null && code !== joinCode(roomId)) throw new Error(`not the join code of ${roomId}`)
  if (room.payload.memberIdList.includes(contactId)) return
  room.payload.memberIdList.push(contactId)
  forgetRoom(roomId)
  puppet.emit('room-join', {
    inviteeIdList: [contactId],
    inviterId: puppet.currentUserId,
    roomId,
    timestamp: Date.now(),
  })
}

// Record what the bot sends before the mock turns it into a (self) message event.
const sendText = puppet.messageSendText.bind(puppet)
puppet.messageSendText = async (conversationId, text, mentionIdList) => {
  sent.push({
    kind: 'text', to: conversationId, text, mentionIdList: mentionIdList ?? [], at: Date.now(),
  })
  return sendText(conversationId, text)
}
const sendFile = puppet.messageSendFile.bind(puppet)
puppet.messageSendFile = async (conversationId, fileBox) => {
  const base64 = await fileBox.toBase64()
  sent.push({
    kind: 'file', to: conversationId, name: fileBox.name, mediaType: fileBox.mediaType, base64,
    at: Date.now(),
  })
  return sendFile(conversationId, fileBox)
}

// An outsider (the room's owner in WeChat, an intruder's friend) adds or removes someone.
function roomAddFromOutside (roomId, contactId, byId) {
  const room = roomOf(roomId)
  const contact = contactOf(contactId)
  const by = contactOf(byId ?? room.payload.ownerId)
  if (room.payload.memberIdList.includes(contactId)) return
  room.add(contact).by(by)
  forgetRoom(roomId)
}

function roomRemoveFromOutside (roomId, contactId, byId) {
  const room = roomOf(roomId)
  const contact = contactOf(contactId)
  const by = contactOf(byId ?? room.payload.ownerId)
  if (!room.payload.memberIdList.includes(contactId)) throw new Error(`${contactId} is not in ${roomId}`)
  room.remove(contact).by(by)
  forgetRoom(roomId)
}

const routes = {
  'GET /state': () => ({
    loggedIn: puppet.isLoggedIn,
    bot: bot.id,
    rooms: Object.fromEntries([...mocker.cacheRoomPayload.values()].map(
      (p) => [p.id, { topic: p.topic, memberIdList: p.memberIdList, full: fullRooms.has(p.id) }],
    )),
  }),
  // A contact writes to the bot in private, or in a room when `room` is given.
  'POST /say': (body) => {
    if (!puppet.isLoggedIn) throw new Error('the bot is not logged in: no client connected')
    const talker = contactOf(body.from)
    const conversation = body.room ? roomOf(body.room) : bot
    talker.say(String(body.text)).to(conversation)
    // The mock stores each message as it makes it: the newest is this one.
    const id = [...mocker.cacheMessagePayload.keys()].at(-1)
    return { id }
  },
  // The puppet delivers a message again (as after a reconnect): same id, same payload.
  'POST /message/again': (body) => {
    if (!mocker.cacheMessagePayload.has(body.id)) throw new Error(`no such message: ${body.id}`)
    puppet.emit('message', { messageId: body.id })
    return {}
  },
  // The account logs out (WeChat ended the session) and later in again (a new scan), while
  // the service and its event stream stay up.
  'POST /logout': () => { puppet.logout('logged out by the control channel'); return {} },
  // (A client that reconnected meanwhile has logged the bot in already: see mocker.use.)
  'POST /login': () => { if (!puppet.isLoggedIn) mocker.login(bot); return {} },
  'POST /contact': (body) => {
    mocker.createContact(contactPayload(body))
    return {}
  },
  'POST /room/add': (body) => { roomAddFromOutside(body.room, body.contact, body.by); return {} },
  'POST /room/remove': (body) => {
    roomRemoveFromOutside(body.room, body.contact, body.by)
    return {}
  },
  // A room-join as a puppet may report it: `inviter` any id, '' (none known) by default,
  // and the newcomer's contact payload unknown unless `known`.
  'POST /room/joined': (body) => {
    const room = roomOf(body.room)
    if (!room.payload.memberIdList.includes(body.contact)) room.payload.memberIdList.push(body.contact)
    forgetRoom(body.room)
    puppet.emit('room-join', {
      inviteeIdList: [body.contact],
      inviterId: body.inviter ?? '',
      roomId: body.room,
      timestamp: Date.now(),
    })
    return {}
  },
  'POST /room/scan': (body) => { roomScan(body.room, body.contact, body.code); return {} },
  'GET /room/code': (_body, query) => {
    const roomId = query.get('room')
    roomOf(roomId)
    return { code: joinCode(roomId) }
  },
  'POST /room/full': (body) => {
    roomOf(body.room)
    if (body.full) fullRooms.add(body.room)
    else fullRooms.delete(body.room)
    return {}
  },
  'GET /room/members': (_body, query) => ({ members: [...roomOf(query.get('room')).payload.memberIdList] }),
  'GET /sent': (_body, query) => ({ sent: sent.slice(Number(query.get('since') ?? 0)) }),
}

function serveControl (port) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://control')
    const route = routes[`${req.method} ${url.pathname}`]
    let raw = ''
    req.on('data', (chunk) => { raw += chunk })
    req.on('end', () => {
      let status = 200
      let answer
      try {
        if (!route) {
          status = 404
          throw new Error(`no route ${req.method} ${url.pathname}`)
        }
        answer = route(raw ? JSON.parse(raw) : {}, url.searchParams)
      } catch (e) {
        if (status === 200) status = 400
        answer = { error: e.message }
      }
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(answer))
    })
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve(server))
  })
}

const puppetServer = new PuppetServer({
  endpoint: `127.0.0.1:${args.port}`,
  puppet,
  token: args.token,
})

await puppetServer.start()
const control = await serveControl(Number(args['control-port']))
process.stdout.write(`READY ${JSON.stringify({ port: Number(args.port), controlPort: Number(args['control-port']) })}\n`)

async function shutdown () {
  control.close()
  await puppetServer.stop().catch(() => {})
  if (puppet.state.active()) await puppet.stop().catch(() => {})
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
