package hq

import "context"

// Intake delivers the devices' messages to a Service from another
// transport than its own MQTT subscriptions: e.g. a quorum queue of a
// RabbitMQ cluster bound to amq.topic, which several HQ replicas consume
// as competing consumers (hq/amqpintake). The Service still answers over
// MQTT: a device's ack is published there.
type Intake interface {
	// Run calls handle for each message of the leaves, with its MQTT
	// topic, until ctx ends, and returns nil then: each message of a
	// Leaves.Shared leaf to one replica of the HQ, each of a Leaves.Every
	// leaf to every replica. handle returns once HQ has handled the
	// message (for events: committed or refused them; the device's ack
	// is published after, apart from handle, and one that is lost only
	// makes the device send the batch again, which HQ drops as a
	// duplicate and acks: so acking the transport after handle never
	// loses an event); it returns false when HQ is stopping and did not
	// handle the message, which the transport should then deliver again.
	// Run may acknowledge a message to its transport only after handle
	// returned true.
	Run(ctx context.Context, leaves Leaves, handle func(ctx context.Context, topic string, payload []byte) bool) error
}
