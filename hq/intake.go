package hq

import "context"

// Intake delivers the devices' events messages to a Service from another
// transport than its own MQTT subscription to tobira/v1/+/+/events: e.g. a
// quorum queue of a RabbitMQ cluster bound to amq.topic, which several HQ
// replicas consume as competing consumers (hq/amqpintake). The Service
// still answers over MQTT: a device's ack is published there.
type Intake interface {
	// Run calls handle for each message, with its MQTT topic, until ctx
	// ends, and returns nil then. handle returns once HQ has committed the
	// message's events (or refused them) and published the device's ack;
	// it returns false when HQ is stopping and did not handle the message,
	// which the transport should then deliver again. Run may acknowledge a
	// message to its transport only after handle returned true.
	Run(ctx context.Context, handle func(ctx context.Context, topic string, payload []byte) bool) error
}
